"""The console's own layout: each document is a thread bundle exactly as intake stores it,

    {"thread": Thread, "messages": [Message, oldest first], "runs": [Run],
     "run_steps": [RunStep]}

in `threads/<thread id>.json` files (beside an optional `assistants.json`) or one per line of a
.jsonl, as a directory or a .zip. Documents need no translation: validation.py says what a bundle
must be. Any document that names no other layout's `export_schema` is read (and reported as a
bad bundle if it is one); the first must have a "thread" key to be recognized.
"""

from collections.abc import Iterator
from typing import Any

from migrations_app.intake.layouts.base import Item

NAME = "own"
DESCRIPTION = (
    'the console\'s own layout: one {"thread", "messages", "runs", "run_steps"} object '
    "per thread, in threads/<thread id>.json files (with an optional assistants.json) or one "
    "per line of a .jsonl"
)


class Reader:
    name = NAME

    def claims(self, where: str, document: Any) -> bool:
        if where.rsplit("/", 1)[-1] == "manifest.json":
            return False
        return not (isinstance(document, dict) and "export_schema" in document)

    def recognizes(self, where: str, document: Any) -> bool:
        return self.claims(where, document) and isinstance(document, dict) and "thread" in document

    def read(self, where: str, line: int | None, document: Any) -> Iterator[Item]:
        yield where, line, document, None

    def finish(self) -> Iterator[Item]:
        return iter(())

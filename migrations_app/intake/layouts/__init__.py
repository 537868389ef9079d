"""Export layouts: each export's documents read by the layout they are in, chosen by content.

The console reads two layouts (one module each, with its reader and its tests):

- `own.py`: its own, {"thread", "messages", "runs", "run_steps"} per thread;
- `v1.py`: assistants-thread-export/v1, the public exporter's.

The first document of an export decides whether it is in a layout the console reads at all (a
v1 manifest or thread record, or one of our bundles): if not, the export is refused with one
error that names the layouts. After that each document goes to the reader that claims it (v1
by its `export_schema`, ours otherwise); one no reader claims is reported by file and line.

A new layout: a module with NAME, DESCRIPTION and a `Reader` (base.Reader), added to READERS
before `own` (which claims whatever names no `export_schema`).
"""

from collections.abc import Iterable, Iterator
from typing import Any

from migrations_app.intake.batches import IntakeError
from migrations_app.intake.layouts import own, v1
from migrations_app.intake.layouts.base import (
    Item,
    Manifest,
    Note,
    Reader,
    Recognized,
    Unread,
)

LAYOUTS = (v1, own)  # the order readers are asked in: the specific first

__all__ = ["LAYOUTS", "Item", "Manifest", "Note", "Recognized", "Unread", "is_assistants", "read"]


def is_assistants(where: str) -> bool:
    return where.rsplit("/", 1)[-1] == "assistants.json"


def _schema(document: Any) -> str:
    if isinstance(document, dict) and "export_schema" in document:
        return f" (export_schema {str(document['export_schema'])[:80]!r})"
    return ""


def readable_layouts() -> str:
    return "; ".join(
        f"{index}) {layout.DESCRIPTION}" for index, layout in enumerate(reversed(LAYOUTS), start=1)
    )


def unknown_layout(
    name: str, where: str, line: int | None, document: Any, *, started: bool = False
) -> str:
    place = name if where == name else f"{name}: {where}"
    if line is not None:
        place += f" (line {line})"
    outcome = (
        "loading stopped there (what was stored before it is kept)"
        if started
        else "nothing was loaded"
    )
    return (
        f"{place} is in a layout the console does not read{_schema(document)}; {outcome}. "
        f"The console reads {len(LAYOUTS)} layouts: {readable_layouts()}."
    )


def read(documents: Iterable[Item], name: str) -> Iterator[Item]:
    """The records of an export's documents (see base.py), each read by its layout. Raises
    IntakeError when the export's first document is in no layout the console reads."""
    readers: list[Reader] = [layout.Reader() for layout in LAYOUTS]
    known = False
    seen: set[str] = set()
    seen_any = False
    for where, line, parsed, error in documents:
        seen_any = True
        if error is not None or is_assistants(where):
            yield where, line, parsed, error
            continue
        reader = next((r for r in readers if r.claims(where, parsed)), None)
        if reader is None or not (known or reader.recognizes(where, parsed)):
            if not known or (reader is None and where.endswith("manifest.json")):
                raise IntakeError(unknown_layout(name, where, line, parsed, started=known))
            yield (
                where,
                line,
                None,
                (
                    f"not in a layout the console reads{_schema(parsed)}; it reads "
                    f"{readable_layouts()}"
                ),
            )
            continue
        known = True
        if reader.name not in seen:
            seen.add(reader.name)
            yield where, None, Recognized(reader.name), None
        yield from reader.read(where, line, parsed)
    if not seen_any:
        raise IntakeError(
            f"{name} holds nothing to load: no thread file (threads/<thread id>.json), .jsonl "
            f"line or manifest.json was found. The console reads {len(LAYOUTS)} layouts: "
            f"{readable_layouts()}."
        )
    for reader in readers:
        yield from reader.finish()

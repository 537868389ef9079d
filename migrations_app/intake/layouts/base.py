"""What an export layout's reader yields, and the interface every reader has.

The containers (exports.py: a directory, a .zip, a .jsonl) yield *documents*: each parsed JSON
object with where it came from. A layout's reader turns the documents of its layout into
*records* intake already knows how to check and store, as `Item` tuples:

- a thread bundle in the console's own shape, `{"thread", "messages", "runs", "run_steps"}`,
  plus `"export"` for what the export said beyond the API's objects (see Thread.export_info);
- `Unread`: a thread the export names but its exporter could not read;
- `Note`: something the batch's report must say (the exporter's notes, counts that differ);
- `Manifest`: what an export's manifest says about it, for the batch page;
- `Recognized`: the name of a layout the export is in (once per layout);
- an error message for a document that cannot be read in the layout.

`assistants.json` (a JSON list of Assistant objects) is the same in every layout and goes
straight to intake. A new layout is one module with a `Reader` and its tests (see __init__.py).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

# (where, line or None, parsed object or record, error message or None)
Item = tuple[str, int | None, Any, str | None]


@dataclass(frozen=True)
class Unread:
    """A thread the export names but could not read itself (its exporter's failure)."""

    thread_id: str
    error: str  # the exporter's error code, e.g. not_found_or_deleted
    exported_at: str  # when the export was made, as the export says it
    detail: str = ""

    @property
    def reason(self) -> str:
        return f"not exported: {self.error}, according to the export of {self.exported_at}"


@dataclass(frozen=True)
class Note:
    """A line for the batch's report ("changed on the way in, or worth knowing")."""

    text: str


@dataclass(frozen=True)
class Recognized:
    """A layout this export is (partly) in, yielded once per layout before its first record."""

    layout: str


@dataclass(frozen=True)
class Manifest:
    """What an export's manifest says about the export as a whole (shown on the batch page)."""

    summary: dict[str, Any]


class Reader(Protocol):
    """One layout's reader, for one export (it may keep counts across the export's documents)."""

    name: str  # shown in the batch's report

    def claims(self, where: str, document: Any) -> bool:
        """Whether `document` belongs to this layout (it reads it, or reports it as bad)."""
        ...

    def recognizes(self, where: str, document: Any) -> bool:
        """Whether `document` is this layout's beyond doubt: the first document of an export
        must be, or the export is in a layout the console does not read."""
        ...

    def read(self, where: str, line: int | None, document: Any) -> Iterator[Item]: ...

    def finish(self) -> Iterator[Item]:
        """Whatever the export as a whole still has to say once every document was read."""
        ...

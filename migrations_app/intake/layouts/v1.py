"""assistants-thread-export/v1: the layout of the public `assistants-api-export` tool (MIT,
August 2026), read from its public description.

A directory, or a zip of it (often with one top-level folder inside):

- `manifest.json`: {"export_schema": "assistants-export-manifest/v1", "script_version",
  "exported_at", "endpoint", "base_url", "assistants_count", "threads_requested",
  "threads_exported", "threads_failed": [{"thread_id", "error"}], "notes": [...]};
- `assistants.json`: a JSON list of Assistant objects;
- `threads/<thread id>.json`: {"export_schema": "assistants-thread-export/v1", "thread_id",
  "exported_at", "thread": Thread or null when it could not be read, "messages": [Message,
  oldest first], "runs": [Run plus "steps": [RunStep, oldest first]], "files": {file id: File
  object (metadata only)}, "errors": [{"object": "thread" | "run_steps" | "file", "id",
  "error", "detail"}]}; objects exactly as the API returned them.

A .jsonl of those thread records reads the same (it has no manifest).

Nothing is dropped: each run's nested steps become the bundle's run steps (every kind, as the
API returned them; intake keeps those with tool calls), the runs stay without them, and the
`files` and `errors` go into the bundle's `export` (the thread's `export_info`: the errors are
warnings of the thread, the files are shown on its page). A thread the exporter could not read
(`"thread": null`, or listed in the manifest's `threads_failed`) is an `Unread` record.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from migrations_app.intake.layouts.base import Item, Manifest, Note, Unread
from migrations_app.intake.validation import THREAD_ID, type_name

SCHEMA = "assistants-thread-export/v1"
MANIFEST_SCHEMA = "assistants-export-manifest/v1"
NAME = SCHEMA
DESCRIPTION = (
    f"{SCHEMA} (the public assistants-api-export tool's layout): a manifest.json "
    f'("export_schema": "{MANIFEST_SCHEMA}"), an assistants.json and threads/<thread id>.json '
    f'files whose "export_schema" is "{SCHEMA}", or a .jsonl of those thread records'
)
UNKNOWN_DATE = "an unknown date"
MANIFEST_FIELDS = (
    "script_version",
    "exported_at",
    "endpoint",
    "base_url",
    "assistants_count",
    "threads_requested",
    "threads_exported",
)


@dataclass
class _Counts:
    """What one export (one manifest's folder) held, to check against its manifest."""

    manifest: dict[str, Any] | None = None
    exported: int = 0  # thread files holding a thread
    unread: int = 0  # thread files whose thread is null
    failed_listed: set[str] = field(default_factory=set)


def _root(where: str) -> str:
    """The export's folder: "" or "top-folder/" (a zip of a directory)."""
    if where.endswith("manifest.json"):
        return where[: -len("manifest.json")]
    return where.rsplit("threads/", 1)[0] if "threads/" in where else where


def _date(record: dict) -> str:
    exported_at = record.get("exported_at")
    return exported_at if isinstance(exported_at, str) and exported_at else UNKNOWN_DATE


def _record_problem(record: dict) -> str | None:
    """What makes a thread record unreadable in this layout (the bundle it becomes is then
    checked like any other, by validation.py)."""
    thread_id = record.get("thread_id")
    if not isinstance(thread_id, str) or not THREAD_ID.match(thread_id):
        shown = repr(thread_id)[:60]
        return f"thread_id is {shown}: expected a thread id (thread_…, at most 64 characters)"
    if record.get("exported_at") is not None and not isinstance(record["exported_at"], str):
        exported_at = type_name(record["exported_at"])
        return f"exported_at is {exported_at}: expected the export's date as text"
    thread = record.get("thread")
    if thread is not None:
        if not isinstance(thread, dict):
            return f"thread is {type_name(thread)}: expected the Thread object, or null"
        if thread.get("id") != thread_id:
            return f"thread.id {thread.get('id')!r} is not the record's thread_id {thread_id!r}"
    for key, kind, expected in (
        ("runs", list, "a list of Run objects"),
        ("files", dict, "an object of File objects by id"),
        ("errors", list, "a list of error objects"),
    ):
        value = record.get(key)
        if value is not None and not isinstance(value, kind):
            return f"{key} is {type_name(value)}: expected {expected}"
    for index, run in enumerate(record.get("runs") or ()):
        if not isinstance(run, dict):
            return f"runs[{index}] is {type_name(run)}: expected a Run object"
        steps = run.get("steps")
        if steps is not None and not isinstance(steps, list):
            return f"runs[{index}].steps is {type_name(steps)}: expected a list of RunStep objects"
    for index, error in enumerate(record.get("errors") or ()):
        if not isinstance(error, dict):
            return f"errors[{index}] is {type_name(error)}: expected an error object"
    return None


def to_bundle(record: dict) -> dict[str, Any]:
    """A readable thread record as a bundle in the console's own shape: the runs' nested steps
    become `run_steps` (each kept as it is, with its run's id where it lacks one), the runs stay
    without them, and what the export says beyond the API's objects goes into `export`."""
    runs, steps = [], []
    for run in record.get("runs") or ():
        run = dict(run)
        for step in run.pop("steps", None) or ():
            if isinstance(step, dict) and step.get("run_id") is None and run.get("id"):
                step = {**step, "run_id": run["id"]}
            steps.append(step)
        runs.append(run)
    export: dict[str, Any] = {"layout": SCHEMA, "exported_at": _date(record)}
    if record.get("errors"):
        export["errors"] = record["errors"]
    if record.get("files"):
        export["files"] = record["files"]
    bundle: dict[str, Any] = {
        "thread": record["thread"],
        "runs": runs,
        "run_steps": steps,
        "export": export,
    }
    if "messages" in record:  # without it validation refuses the bundle, in words
        bundle["messages"] = record["messages"]
    return bundle


def _thread_error(record: dict) -> dict[str, Any]:
    return next(
        (
            e
            for e in record.get("errors") or ()
            if isinstance(e, dict) and e.get("object") == "thread"
        ),
        {},
    )


class Reader:
    name = NAME

    def __init__(self) -> None:
        self.exports: dict[str, _Counts] = {}

    def claims(self, where: str, document: Any) -> bool:
        return isinstance(document, dict) and document.get("export_schema") in (
            SCHEMA,
            MANIFEST_SCHEMA,
        )

    def recognizes(self, where: str, document: Any) -> bool:
        return self.claims(where, document)

    def read(self, where: str, line: int | None, document: Any) -> Iterator[Item]:
        if document["export_schema"] == MANIFEST_SCHEMA:
            yield from self._manifest(where, document)
        else:
            yield from self._thread(where, line, document)

    def _counts(self, where: str) -> _Counts:
        return self.exports.setdefault(_root(where), _Counts())

    def _thread(self, where: str, line: int | None, record: dict) -> Iterator[Item]:
        if problem := _record_problem(record):
            thread_id = record.get("thread_id")
            if isinstance(thread_id, str) and THREAD_ID.match(thread_id):
                problem = f"{thread_id}: {problem}"
            yield where, line, None, problem
            return
        counts = self._counts(where)
        if record.get("thread") is None:
            counts.unread += 1
            error = _thread_error(record)
            yield (
                where,
                line,
                Unread(
                    record["thread_id"],
                    str(error.get("error") or "not readable"),
                    _date(record),
                    str(error.get("detail") or ""),
                ),
                None,
            )
            return
        counts.exported += 1
        yield where, line, to_bundle(record), None

    def _manifest(self, where: str, manifest: dict) -> Iterator[Item]:
        counts = self._counts(where)
        failed = manifest.get("threads_failed") or []
        if not isinstance(failed, list):
            yield where, None, None, f"threads_failed is {type_name(failed)}: expected a list"
            failed = []
        summary = {key: manifest[key] for key in MANIFEST_FIELDS if key in manifest}
        summary["threads_failed"] = len(failed)
        counts.manifest = summary
        yield where, None, Manifest(summary), None
        notes = manifest.get("notes") or []
        for note in notes if isinstance(notes, list) else [notes]:
            yield where, None, Note(f"the exporter's note: {note}"), None
        exported_at = _date(manifest)
        for index, entry in enumerate(failed):
            thread_id = entry.get("thread_id") if isinstance(entry, dict) else None
            if not isinstance(thread_id, str) or not THREAD_ID.match(thread_id):
                yield (
                    where,
                    None,
                    None,
                    (
                        f"threads_failed[{index}] names no thread id ({repr(entry)[:60]}): "
                        'expected {"thread_id": "thread_…", "error": …}'
                    ),
                )
                continue
            counts.failed_listed.add(thread_id)
            yield (
                where,
                None,
                Unread(thread_id, str(entry.get("error") or "not readable"), exported_at),
                None,
            )

    def finish(self) -> Iterator[Item]:
        """Where a manifest's counts and the thread files differ, the batch's report says so."""
        for root, counts in self.exports.items():
            manifest = counts.manifest
            if manifest is None:
                continue
            where = f"{root}manifest.json"
            said = manifest.get("threads_exported")
            if isinstance(said, int) and said != counts.exported:
                yield (
                    where,
                    None,
                    Note(
                        f"the manifest says {said} thread{'s were' if said != 1 else ' was'} "
                        f"exported; the export holds {counts.exported} thread file"
                        f"{'s' if counts.exported != 1 else ''} with a thread"
                    ),
                    None,
                )
            requested = manifest.get("threads_requested")
            failed = manifest["threads_failed"]
            if isinstance(requested, int) and isinstance(said, int) and requested != said + failed:
                yield (
                    where,
                    None,
                    Note(
                        f"the manifest's counts do not add up: {requested} threads requested, "
                        f"{said} exported, {failed} failed"
                    ),
                    None,
                )

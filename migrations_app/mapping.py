"""The thread → conversation mapping as CSV: the one output no API can rebuild."""

import csv
from collections.abc import Iterator
from typing import IO

from django.db.models import QuerySet

from migrations_app.models import Thread

MAPPING_HEADER = ["thread_id", "conversation_id", "status", "items", "warnings"]


def mapping_rows(threads: QuerySet) -> Iterator[list]:
    """CSV rows of the thread → conversation mapping, streamed from the database."""
    rows = threads.order_by("pk").values_list(
        "thread_id", "conversation_id", "status", "items_committed", "warning_count"
    )
    yield MAPPING_HEADER
    for thread_id, conversation_id, status, items, warnings in rows.iterator(chunk_size=5000):
        yield [thread_id, conversation_id or "", status, items, warnings]


def write_mapping(out: IO[str], threads: QuerySet | None = None) -> int:
    """Write the mapping of `threads` (default: all) to `out`; returns how many threads."""
    writer = csv.writer(out, lineterminator="\n")
    count = -1
    for row in mapping_rows(threads if threads is not None else Thread.objects.all()):
        writer.writerow(row)
        count += 1
    return count

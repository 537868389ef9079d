"""The thread → conversation mapping as CSV: the one output no API can rebuild."""

import csv
from collections.abc import Iterator
from typing import IO

from django.db.models import OuterRef, QuerySet, Subquery

from migrations_app.models import Conversation, Thread

MAPPING_HEADER = ["thread_id", "conversation_id", "status", "items", "warnings"]


def mapping_rows(threads: QuerySet) -> Iterator[list]:
    """CSV rows of the thread → conversation mapping, streamed from the database."""
    live = Conversation.objects.live().filter(thread=OuterRef("pk")).values("conversation_id")[:1]
    rows = (
        threads.order_by("pk")
        .annotate(live_conversation_id=Subquery(live))
        .values_list(
            "thread_id", "live_conversation_id", "status", "items_committed", "warning_count"
        )
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

"""What an application asks the console: which conversation did this thread become?

One query answers any number of ids (up to the API's 1,000): the threads by their unique id,
each with its live conversation and its assistant's model. The warnings are what an application
must know to continue the conversation (lost at the destination, longer than the model's
context, a model that retires) or that the history is not exactly the original's.

With "prioritize on lookup", a thread looked up before it is migrated is queued ahead of every
other (states.queue / states.move_ahead with a task ahead of the queue: broker.py).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.db import connection
from django.db.models import FilteredRelation, Q
from django.utils import timezone

from migrations_app import readiness, states
from migrations_app.models import Assistant, Conversation, ErrorKind, Thread, ThreadStatus

MAX_IDS = 1000
# Task groups of lookups: a thread already queued by one is not queued ahead again.
LOOKUP_GROUP = "lookup"
FIELDS = (
    "pk",
    "thread_id",
    "status",
    "error_kind",
    "items_total",
    "warning_count",
    "task_group",
    "assistant__model",
    "live__conversation_id",
    "live__verified_at",
    "live__input_tokens",
    "live__tokens_model",
    "live__exceeds_context",
)


@dataclass
class Found:
    thread_id: str
    conversation_id: str | None
    status: str
    migrated_at: datetime | None
    items: int
    warnings: list[dict[str, str]] = field(default_factory=list)
    pk: int = 0
    task_group: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "conversation_id": self.conversation_id,
            "status": self.status,
            "migrated_at": self.migrated_at,
            "items": self.items,
            "warnings": self.warnings,
        }


def find(thread_ids: Sequence[str]) -> tuple[list[Found], list[str]]:
    """(the threads known, in the order asked, each once; the ids not known, in that order)."""
    wanted = list(dict.fromkeys(thread_ids))
    today = timezone.localdate()
    rows = _rows(wanted)
    by_id = {}
    for values in rows:
        row = dict(zip(FIELDS, values, strict=True))
        by_id[row["thread_id"]] = _found(row, today)
    found = [by_id[thread_id] for thread_id in wanted if thread_id in by_id]
    unknown = [thread_id for thread_id in wanted if thread_id not in by_id]
    return found, unknown


def _rows(thread_ids: list[str]) -> Iterable[tuple[Any, ...]]:
    """The FIELDS of the threads among `thread_ids`. On PostgreSQL one prepared statement with
    the ids as one array parameter (building the ORM's query cost a millisecond and more of a
    single lookup's five); elsewhere (the demo's SQLite) the same query through the ORM."""
    if connection.vendor != "postgresql":
        return (
            Thread.objects.filter(thread_id__in=thread_ids)
            .annotate(
                live=FilteredRelation(
                    "conversations", condition=Q(conversations__replaced_at__isnull=True)
                )
            )
            .order_by()
            .values_list(*FIELDS)
        )
    with connection.cursor() as cursor:
        cursor.execute(_find_sql(), [thread_ids])
        return cursor.fetchall()


@functools.cache
def _find_sql() -> str:
    quote = connection.ops.quote_name
    thread = quote(Thread._meta.db_table)
    conversation = quote(Conversation._meta.db_table)
    assistant = quote(Assistant._meta.db_table)
    return (
        "SELECT t.id, t.thread_id, t.status, t.error_kind, t.items_total, t.warning_count, "
        "t.task_group, a.model, c.conversation_id, c.verified_at, c.input_tokens, "
        f"c.tokens_model, c.exceeds_context FROM {thread} t "
        # LATERAL: each thread's live conversation by its unique partial index, whatever the
        # table sizes (a plain join was hashed against a scan of every conversation).
        "LEFT JOIN LATERAL (SELECT conversation_id, verified_at, input_tokens, tokens_model, "
        f"exceeds_context FROM {conversation} WHERE thread_id = t.id AND replaced_at IS NULL "
        "LIMIT 1) c ON true "
        f"LEFT JOIN {assistant} a ON a.id = t.assistant_id "
        "WHERE t.thread_id = ANY(%s)"
    )


def _found(row: dict[str, Any], today: date) -> Found:
    verified = row["live__verified_at"]
    return Found(
        thread_id=row["thread_id"],
        # Only a conversation verified to hold the thread is one to continue.
        conversation_id=row["live__conversation_id"] if verified else None,
        status=row["status"],
        migrated_at=verified,
        items=row["items_total"],
        warnings=_warnings(row, today),
        pk=row["pk"],
        task_group=row["task_group"],
    )


def _warnings(row: dict[str, Any], today: date) -> list[dict[str, str]]:
    warnings = []
    if row["status"] == ThreadStatus.FAILED and row["error_kind"] == ErrorKind.LOST:
        warnings.append(
            {
                "code": "lost_at_destination",
                "message": "The conversation was verified, then found gone or changed at the "
                "destination; the console's staff re-migrate it into a new conversation.",
            }
        )
    table = readiness.model_table()
    if row["live__exceeds_context"] and row["live__input_tokens"] is not None:
        limits = table.limits(row["live__tokens_model"])
        if limits is not None:
            phrase = readiness.exceeds_phrase(row["live__input_tokens"], limits)
            warnings.append({"code": "exceeds_context", "message": phrase[0].upper() + phrase[1:]})
    model = row["assistant__model"]
    shutdown = table.shutdown(model)
    if shutdown is not None:
        phrase = readiness.retirement_phrase(model, shutdown, today)
        warnings.append({"code": "model_retires", "message": phrase[0].upper() + phrase[1:]})
    if row["warning_count"]:
        count = row["warning_count"]
        warnings.append(
            {
                "code": "conversion",
                "message": f"{count} part{'s' if count != 1 else ''} of the thread could not be "
                "migrated exactly as it was (the thread's page in the console lists them).",
            }
        )
    return warnings


def prioritize(found: list[Found], application: str) -> list[str]:
    """Queue ahead the threads of `found` not migrated yet: pending ones are queued, queued ones
    get a task ahead of the queue (unless a lookup already gave them one). Failed and cancelled
    threads are left to staff. Returns the thread ids queued ahead; their status in `found`
    says so."""
    group = f"{LOOKUP_GROUP} {application[:40]} {timezone.now():%Y-%m-%d %H:%M:%S}"
    actor = f"api: {application}"[:128]
    pending = [f.pk for f in found if f.status == ThreadStatus.PENDING]
    waiting = [
        f.pk
        for f in found
        if f.status == ThreadStatus.QUEUED and not f.task_group.startswith(LOOKUP_GROUP + " ")
    ]
    moved = set()
    if pending:
        moved |= set(states.queue(pending, "migrate", group=group, actor_label=actor, ahead=True))
    if waiting:
        moved |= set(states.move_ahead(waiting, group=group, actor_label=actor))
    for item in found:
        if item.pk in moved:
            item.status = ThreadStatus.QUEUED
    return [item.thread_id for item in found if item.pk in moved]

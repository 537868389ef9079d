"""What staff can do to threads, from the admin or the command line: plan (who would be acted on,
who skipped and why) and apply (through `states`, which records who did it and queues the work).

Which action applies to which state is `states.ELIGIBLE`; every other thread is skipped with a
reason, so a confirmation page can say exactly what will happen before anything does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from django.db.models import BooleanField, Count, ExpressionWrapper, QuerySet
from django.utils import timezone

from migrations_app import states
from migrations_app.models import Thread

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

CHUNK = 2000


@dataclass(frozen=True)
class ActionRule:
    name: str
    label: str


RULES = {
    rule.name: rule
    for rule in (
        ActionRule("fetch", "Fetch from source"),
        ActionRule("migrate", "Migrate"),
        ActionRule("retry", "Retry"),
        ActionRule("remigrate", "Re-migrate"),
        ActionRule("cancel", "Cancel"),
    )
}


@dataclass
class Plan:
    rule: ActionRule
    eligible: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def plan(action: str, threads: QuerySet[Thread]) -> Plan:
    """How many of `threads` the action applies to, and why the rest are skipped: two grouped
    queries, whatever the number of threads."""
    eligible = states.ELIGIBLE[action]
    started = ExpressionWrapper(states.UPLOAD_STARTED, output_field=BooleanField())
    groups = (
        threads.exclude(eligible)
        .order_by()
        .annotate(upload_started=started)
        .values_list("status", "error_kind", "upload_started")
        .annotate(count=Count("pk"))
    )
    skipped: dict[str, int] = {}
    for status, error_kind, upload_started, count in groups:
        reason = states.skip_reason(action, status, error_kind, upload_started)
        skipped[reason] = skipped.get(reason, 0) + count
    return Plan(RULES[action], threads.filter(eligible).order_by().count(), skipped)


def chunks(iterator: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(islice(iterator, size)):
        yield chunk


def apply(
    action: str,
    threads: QuerySet[Thread],
    *,
    user: AbstractBaseUser | None = None,
    actor_label: str = "",
    enqueue: bool = True,
    on_chunk: Callable[[list[int]], Any] | None = None,
    group: str = "",
) -> tuple[int, str]:
    """Apply an action to every eligible thread in `threads`; returns (count, task group).

    Works in chunks, so "all 10 million threads matching this filter" never loads them at once.
    Each thread's state changes only if the action still applies when its chunk is written.
    """
    group = group or f"{action} {timezone.now():%Y-%m-%d %H:%M:%S}"
    pks = (
        threads.filter(states.ELIGIBLE[action]).order_by("pk").values_list("pk", flat=True)
    ).iterator(chunk_size=CHUNK)
    total = 0
    for chunk in chunks(pks, CHUNK):
        if action == "cancel":
            changed = states.cancel(chunk, group=group, user=user, actor_label=actor_label)
        else:
            changed = states.queue(
                chunk, action, group=group, user=user, actor_label=actor_label, enqueue=enqueue
            )
        total += len(changed)
        if on_chunk and changed:
            on_chunk(changed)
    return total, group

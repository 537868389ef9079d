"""What staff can do to threads, from the admin or the command line: plan (who would be acted on,
who skipped and why) and apply (through `states`, which records who did it and queues the work).

Which action applies to which state is `states.ELIGIBLE`; every other thread is skipped with a
reason, so a confirmation page can say exactly what will happen before anything does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import BooleanField, Count, Exists, ExpressionWrapper, F, OuterRef, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from migrations_app import states
from migrations_app.models import Attempt, BulkAction, Thread
from migrations_app.paging import pk_pages

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.db.models.sql import Query

log = logging.getLogger(__name__)
# More eligible threads than this and the action is applied by a worker (a BulkAction), not
# inside the request: two pages of the threads list still act at once.
INLINE_LIMIT = 100
# A cancel is a control action: it must take effect at once, whatever the depth of the queue it
# stops. It is applied inside the request up to this many threads (a few UPDATEs of a page
# each), and beyond it on the control lane, which every worker process serves from its own
# thread (workers.py), never behind migration tasks.
INLINE_LIMITS = {"cancel": 10_000}
CONTROL_ACTIONS = {"cancel"}
BULK_TASK = "migrations_app.tasks.apply_bulk_action"


@dataclass(frozen=True)
class ActionRule:
    name: str
    label: str
    # What the action does to the thread → conversation mapping, for the confirmation page.
    mapping: str = ""


RULES = {
    rule.name: rule
    for rule in [
        ActionRule("fetch", Attempt.Action.FETCH.label),
        ActionRule(
            "sync",
            Attempt.Action.SYNC.label,
            "Each thread is checked for messages added at the source since it was migrated; "
            "those with new ones are appended to the same conversation (the mapping does not "
            "change). A thread whose earlier messages changed at the source is marked diverged, "
            "never rewritten.",
        ),
        ActionRule("migrate", Attempt.Action.MIGRATE.label),
        ActionRule("retry", Attempt.Action.RETRY.label),
        ActionRule(
            "remigrate",
            Attempt.Action.REMIGRATE.label,
            "Each thread keeps its current conversation in the mapping until a worker starts "
            "its new upload; the old conversation then stays in the thread's history. "
            "Cancelling before the upload starts leaves the thread as it is now.",
        ),
        ActionRule(
            "cancel",
            Attempt.Action.CANCEL.label,
            "Workers skip them from the moment you confirm. A thread queued for a re-migrate "
            "whose upload has not started goes back to its state before, keeping its "
            "conversation and its mapping; the others become Cancelled.",
        ),
    ]
}


def inline_limit(action: str) -> int:
    return INLINE_LIMITS.get(action, INLINE_LIMIT)


NAMED_UP_TO = 5  # a confirmation page names the threads when there are this many or fewer


@dataclass(frozen=True)
class Named:
    """A thread a confirmation page names: acted on, or skipped for `skip_reason`."""

    pk: int
    thread_id: str
    skip_reason: str = ""


@dataclass
class Plan:
    rule: ActionRule
    eligible: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    named: list[Named] = field(default_factory=list)  # every thread, when NAMED_UP_TO or fewer

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
    from migrations_app.intake.source import source_configured

    source = source_configured()
    skipped: dict[str, int] = {}
    for status, error_kind, upload_started, count in groups:
        reason = states.skip_reason(action, status, error_kind, upload_started, source=source)
        skipped[reason] = skipped.get(reason, 0) + count
    result = Plan(RULES[action], threads.filter(eligible).order_by().count(), skipped)
    if result.eligible + result.skipped_total <= NAMED_UP_TO:
        result.named = _named(action, threads, source)
    return result


def _named(action: str, threads: QuerySet[Thread], source: bool) -> list[Named]:
    """The few selected threads by name, each with why it is skipped (if it is)."""
    flags = {
        "applies": ExpressionWrapper(states.ELIGIBLE[action], output_field=BooleanField()),
        "upload_started": ExpressionWrapper(states.UPLOAD_STARTED, output_field=BooleanField()),
    }
    rows = threads.order_by("thread_id").annotate(**flags)
    return [
        Named(
            row["pk"],
            row["thread_id"],
            ""
            if row["applies"]
            else states.skip_reason(
                action, row["status"], row["error_kind"], row["upload_started"], source=source
            ),
        )
        for row in rows.values("pk", "thread_id", "status", "error_kind", *flags)[:NAMED_UP_TO]
    ]


def task_group(action: str) -> str:
    return f"{action} {timezone.now():%Y-%m-%d %H:%M:%S}"


def apply_page(
    action: str,
    pks: Sequence[int],
    *,
    group: str,
    user: User | None = None,
    actor_label: str = "",
    enqueue: bool = True,
) -> list[int]:
    """Apply an action to the threads among `pks` it still applies to; returns those pks.
    Migrate, retry, re-migrate and cancel go through `states` (one history row each); a fetch
    queues one fetch task per thread, whose history row is written when it runs."""
    if action == "cancel":
        return states.cancel(pks, group=group, user=user, actor_label=actor_label)
    if action == "fetch":
        from migrations_app.intake.source import queue_fetches

        found = Thread.objects.filter(states.ELIGIBLE["fetch"], pk__in=list(pks))
        rows = list(found.order_by("pk").values_list("pk", "thread_id"))
        queue_fetches([thread_id for _, thread_id in rows], group)
        return [pk for pk, _ in rows]
    if action == "sync":  # a check first (the API, so a worker's): only what is new is queued
        from migrations_app import sync

        to_check: list[int] = list(
            sync.syncable(Thread.objects.filter(pk__in=list(pks))).values_list("pk", flat=True)
        )
        sync.queue_checks(to_check, group=group)
        return to_check
    return states.queue(
        pks, action, group=group, user=user, actor_label=actor_label, enqueue=enqueue
    )


def apply(
    action: str,
    threads: QuerySet[Thread],
    *,
    user: User | None = None,
    actor_label: str = "",
    enqueue: bool = True,
    on_chunk: Callable[[list[int]], Any] | None = None,
    group: str = "",
) -> tuple[int, str]:
    """Apply an action to every eligible thread in `threads`; returns (count, task group).

    Works a page of threads at a time, so "all 10 million threads matching this filter" never
    loads them at once. Each thread's state changes only if the action still applies when its
    page is written.
    """
    group = group or task_group(action)
    total = 0
    for page in pk_pages(threads.filter(states.ELIGIBLE[action])):
        changed = apply_page(
            action, page, group=group, user=user, actor_label=actor_label, enqueue=enqueue
        )
        total += len(changed)
        if on_chunk and changed:
            on_chunk(changed)
    return total, group


# --- many threads: applied by a worker ---------------------------------------------------------
def start_bulk(
    action: str,
    threads: QuerySet[Thread],
    *,
    eligible: int,
    user: User | None = None,
    selection: str = "",
) -> BulkAction:
    """Hand an action on many threads to a worker: a BulkAction row and the one task that
    applies it, queued together. `eligible` is what the confirmation page counted."""
    group = task_group(action)
    with transaction.atomic():  # the ORM broker writes to this database: both or neither
        bulk = BulkAction.objects.create(
            action=action,
            requested_by=user,
            selection=selection,
            eligible=eligible,
            task_group=group,
        )
        _queue_bulk(bulk, threads.query)
    return bulk


def _queue_bulk(bulk: BulkAction, query: Query) -> None:
    """The task that applies (or goes on applying) a bulk action: a control action's on the
    control lane. The selection travels as the queryset's query (django-q2 signs what it
    pickles)."""
    from django_q.tasks import async_task

    from migrations_app.workers import control_queue

    lane = control_queue() if bulk.action in CONTROL_ACTIONS else None
    broker = states.recording_broker(lane)
    options = {"broker": broker} if broker else {}
    async_task(
        BULK_TASK, bulk.pk, query, group=bulk.task_group, task_name=f"bulk #{bulk.pk}", **options
    )
    BulkAction.objects.filter(pk=bulk.pk).update(task_row=broker.last_row if broker else None)


def run_bulk(
    bulk_pk: int,
    query: Query,
    *,
    seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Apply a BulkAction a page at a time, recording its progress after each page. After
    `seconds` (default: half the task timeout) it queues a task to go on where it stopped, so
    no task runs into the timeout whatever the number of threads. A task delivered again after
    its worker died resumes after the last page it recorded. Returns the status."""
    bulk = BulkAction.objects.select_related("requested_by").get(pk=bulk_pk)
    if bulk.is_finished:
        return bulk.status
    touched = BulkAction.objects.filter(pk=bulk_pk)
    touched.update(status=BulkAction.Status.RUNNING, updated_at=Now())
    threads = Thread.objects.all()
    threads.query = query
    budget = seconds if seconds is not None else settings.Q_CLUSTER["timeout"] / 2
    stop_at = clock() + budget
    eligible = threads.filter(states.ELIGIBLE[bulk.action])
    try:
        for page in pk_pages(eligible, after=bulk.last_pk):
            with transaction.atomic():
                changed = apply_page(
                    bulk.action, page, group=bulk.task_group, user=bulk.requested_by
                )
                touched.update(done=F("done") + len(changed), last_pk=page[-1], updated_at=Now())
            if clock() >= stop_at:
                _go_on_later(bulk, query)
                return BulkAction.Status.QUEUED
    except Exception as error:
        log.exception("bulk action %s stopped", bulk_pk)
        touched.update(
            status=BulkAction.Status.FAILED,
            finished_at=Now(),
            updated_at=Now(),
            error=f"Stopped: {error} ({type(error).__name__}). Threads acted on before it stay "
            "so; apply the action again for the rest (they are the ones it still applies to).",
        )
        raise
    touched.update(
        status=BulkAction.Status.DONE,
        finished_at=Now(),
        updated_at=Now(),
        # The selected threads it did not act on (those it did carry its task group now).
        skipped=plan(bulk.action, threads.exclude(task_group=bulk.task_group)).skipped,
    )
    return BulkAction.Status.DONE


def _go_on_later(bulk: BulkAction, query: Query) -> None:
    with transaction.atomic():
        BulkAction.objects.filter(pk=bulk.pk).update(
            status=BulkAction.Status.QUEUED, updated_at=Now()
        )
        _queue_bulk(bulk, query)


def unfinished_bulk_actions(limit: int = 5) -> list[BulkAction]:
    """Bulk actions queued or being applied now, newest first."""
    unfinished = [BulkAction.Status.QUEUED, BulkAction.Status.RUNNING]
    return list(
        BulkAction.objects.filter(status__in=unfinished)
        .select_related("requested_by")
        .order_by("-created_at")[:limit]
    )


def sweep_stopped_bulk_actions() -> int:
    """Bulk actions nothing will finish, failed with the reason: running but untouched for
    longer than a task can be re-delivered and run (their worker was killed and the task is
    gone), or queued while their task is gone (purged, or lost). Returns how many."""
    from django_q.models import OrmQ

    timeout, retry = settings.Q_CLUSTER["timeout"], settings.Q_CLUSTER["retry"]
    stale = timezone.now() - timedelta(seconds=timeout + retry)
    again = "Threads acted on before it stay so; apply the action again for the rest (they are "
    again += "the ones it still applies to)."
    stopped = BulkAction.objects.filter(
        status=BulkAction.Status.RUNNING, updated_at__lt=stale
    ).update(
        status=BulkAction.Status.FAILED,
        finished_at=Now(),
        updated_at=Now(),
        error=f"The worker applying it stopped without finishing. {again}",
    )
    task = OrmQ.objects.filter(pk=OuterRef("task_row"))
    lost = BulkAction.objects.filter(
        ~Exists(task),
        status=BulkAction.Status.QUEUED,
        task_row__isnull=False,
        updated_at__lt=timezone.now() - timedelta(minutes=1),
    ).update(
        status=BulkAction.Status.FAILED,
        finished_at=Now(),
        updated_at=Now(),
        error=f"Its task left the queue without running it (purged, or lost). {again}",
    )
    return stopped + lost

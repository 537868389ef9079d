"""A thread's migration state, and the only code that changes it.

A thread's status, lease, progress counters, error and queue fields change here and nowhere else,
each by one conditional UPDATE fenced on the state the caller expects (and, for a worker, on the
lease it holds), timed by the database's clock, and telling whether it applied. Nothing saves a
whole thread row: a worker frozen for a minute (GC, SIGSTOP, a long Retry-After) would write back
what it read before the freeze.

    pending ─queue─▶ queued ─take─▶ running ─▶ succeeded ─re-migrate─▶ queued
       ▲               │ ▲             │   └─▶ failed ─retry / re-migrate─▶ queued
     fetch             │ └───sweep─────┘ (lease expired: the next worker resumes it)
    (found)          cancel
       │               ▼
     failed         cancelled ─migrate─▶ queued
   (not found)

Every failure names its remedy: not found at the source → fetch again; not in the export (its
exporter could not read it) → fetch again where a source answers, else load an export that holds
it; a conversation that does not match → re-migrate into a new conversation; anything else →
retry (it resumes).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import (
    BooleanField,
    Case,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Now
from django.utils import timezone

from migrations_app.models import Attempt, Conversation, ErrorKind, Thread, ThreadStatus

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from migrations_app.openai_client import ApiFailure

Clock = Callable[[], float]
ERROR_MESSAGE_LIMIT = 4000
TASK_FUNCTION = "migrations_app.tasks.migrate_threads"
RUN_INLINE = 0  # queued_task of threads queued for an inline run (migrate_threads --inline)
# Options for the per-thread tasks (migrate, fetch). To save a successful task django-q2 first
# loads every saved success (up to Q_CLUSTER's save_limit, each unpickled) to prune the oldest:
# at 10,000 requests a minute that was a sixth of the cluster's CPU and grows with the table. A
# thread's own history (its Attempt rows) already says what its task did; failures are saved.
PER_THREAD_TASK = {"save": False}
CLEAR_ERROR = {"error_kind": "", "error_message": "", "error_http_status": None,
               "error_request_id": ""}  # fmt: skip
RELEASE = {"lease_owner": "", "lease_expires_at": None}


class LeaseLost(Exception):
    """Another worker holds the thread now (or staff changed it): stop, write nothing more."""


# --- which action applies to which state: the remedies ------------------------------------------
# The upload has started once a live conversation exists: from then on the mirror is what the
# conversation was built from, and a fetch would change the input under it.
UPLOAD_STARTED = ~Q(conversation_id="")
# A retry would fail the same way.
DEAD_END_ERRORS = [ErrorKind.NOT_FOUND, ErrorKind.CONFLICT, ErrorKind.NOT_EXPORTED]
RETRYABLE_FAILURE = Q(status=ThreadStatus.FAILED) & ~Q(error_kind__in=DEAD_END_ERRORS)

ELIGIBLE = {
    "migrate": Q(status__in=[ThreadStatus.PENDING, ThreadStatus.CANCELLED]) | RETRYABLE_FAILURE,
    "retry": Q(status=ThreadStatus.CANCELLED) | RETRYABLE_FAILURE,
    "remigrate": Q(status=ThreadStatus.SUCCEEDED)
    | (Q(status=ThreadStatus.FAILED) & UPLOAD_STARTED),
    "cancel": Q(status=ThreadStatus.QUEUED),
    "fetch": ~Q(status=ThreadStatus.RUNNING) & ~UPLOAD_STARTED,
}


def applicable_actions(thread_pk: int) -> set[str]:
    """The actions that apply to this thread now (the thread page's buttons), in one query."""
    flags = {
        action: ExpressionWrapper(condition, output_field=BooleanField())
        for action, condition in ELIGIBLE.items()
    }
    row = Thread.objects.filter(pk=thread_pk).annotate(**flags).values(*flags).first() or {}
    return {action for action, applies in row.items() if applies}


CANCEL_SKIPS: dict[str, str] = {
    ThreadStatus.CANCELLED: "already cancelled",
    ThreadStatus.SUCCEEDED: "already migrated",
}


def skip_reason(action: str, status: str, error_kind: str, upload_started: bool) -> str:
    """Why `action` does not apply to a thread in this state, in words for a confirmation page."""
    if status == ThreadStatus.RUNNING:
        return "running now" + (" (it will finish)" if action == "cancel" else "")
    if action == "fetch":
        return "upload started: the mirror is kept as it was uploaded (use re-migrate)"
    if status == ThreadStatus.QUEUED:
        return "already queued"
    if action == "cancel":
        return CANCEL_SKIPS.get(status, "not queued")
    if status == ThreadStatus.SUCCEEDED:
        if action == "migrate":
            return "already migrated (use re-migrate to create a new conversation)"
        return "already migrated"
    if error_kind == ErrorKind.NOT_FOUND:
        return "not found at the source (fetch again once the id or source is fixed)"
    if error_kind == ErrorKind.NOT_EXPORTED:
        return "not in the export (fetch it from a source, or load an export that holds it)"
    if error_kind == ErrorKind.CONFLICT:
        return "its conversation does not match (use re-migrate)"
    if action == "remigrate":
        return (
            "never migrated (use migrate)"
            if status == ThreadStatus.PENDING
            else "nothing uploaded yet"
        )
    if status == ThreadStatus.PENDING:
        return "not failed (use migrate)"
    return f"status {status}"


# The action that fixes a failure of each kind (any other kind: retry, which resumes).
REMEDY_ACTIONS: dict[str, str] = {
    ErrorKind.NOT_FOUND: "fetch",
    ErrorKind.CONFLICT: "remigrate",
    ErrorKind.NOT_EXPORTED: "fetch",  # only where a source answers: see remedy_offered
}


def remedy_offered(error_kind: str) -> str | None:
    """The action staff are offered for failures of this kind now: a fetch only where a live
    source is configured (without one, the remedy of a thread not in the export is to load an
    export that holds it, which is no button)."""
    from migrations_app.intake.source import source_configured

    action = remedy_action(error_kind)
    if action == "fetch" and error_kind == ErrorKind.NOT_EXPORTED and not source_configured():
        return None
    return action


def remedy_action(error_kind: str) -> str:
    return REMEDY_ACTIONS.get(error_kind, "retry")


def remedy(thread: Thread) -> str:
    """What staff can do about a failed thread, in one sentence."""
    if thread.status != ThreadStatus.FAILED:
        return ""
    if thread.error_kind == ErrorKind.NOT_FOUND:
        return "Fix the id or the source, then fetch it again."
    if thread.error_kind == ErrorKind.NOT_EXPORTED:
        from migrations_app.intake.source import source_configured

        if source_configured():
            return "Fetch it again from the source, or load an export that holds it."
        return (
            "Load an export that holds it (Import threads): its exporter could not read it, "
            "and no source API is configured to fetch it from."
        )
    if thread.error_kind == ErrorKind.CONFLICT:
        return "Re-migrate it into a new conversation (the old one stays in the history)."
    if thread.conversation_id:
        return "Retry resumes the upload where it stopped; re-migrate starts a new conversation."
    return "Retry it once the cause is fixed."


# --- a worker's lease ----------------------------------------------------------------------------
@dataclass
class Lease:
    """A worker's hold on one thread. `valid_until` is by the worker's own clock and errs early:
    it is counted from before the statement that set the lease, which the database timed later."""

    thread_pk: int
    owner: str
    seconds: float
    valid_until: float
    clock: Clock = time.monotonic

    def remaining(self) -> float:
        return self.valid_until - self.clock()


def _worker_filter(lease: Lease) -> Q:
    return Q(pk=lease.thread_pk, status=ThreadStatus.RUNNING, lease_owner=lease.owner)


def take(thread_pk: int, owner: str, seconds: float, clock: Clock = time.monotonic) -> Lease | None:
    """The lease on a queued thread, or on a running one whose worker let its lease expire (it
    resumes from the last committed batch). None if another worker holds it or it is no longer
    queued (cancelled, done).

    A queued thread is taken by one fenced UPDATE alone (the common case: no transaction, no
    history to close, since a thread is queued again only after its open attempts were closed).
    A running thread whose lease expired is taken by a second fenced UPDATE, in a transaction
    that closes the attempt its last worker left open."""
    started = clock()
    lease = Lease(thread_pk, owner, seconds, started + seconds, clock)
    fields = {
        "status": ThreadStatus.RUNNING,
        "lease_owner": owner,
        "lease_expires_at": Now() + timedelta(seconds=seconds),
        "attempts": F("attempts") + 1,
        "queued_task": None,
        "updated_at": Now(),
    }
    if Thread.objects.filter(pk=thread_pk, status=ThreadStatus.QUEUED).update(**fields):
        return lease
    with transaction.atomic():
        taken = Thread.objects.filter(
            pk=thread_pk, status=ThreadStatus.RUNNING, lease_expires_at__lt=Now()
        ).update(**fields)
        if taken:
            _close_open_attempts(Q(thread_id=thread_pk), "its lease expired and was taken over")
    return lease if taken else None


def hold(lease: Lease, needed: float) -> None:
    """Make sure the lease outlives the next `needed` seconds (a request's timeout plus any wait
    before it). Writes only when the lease would not: a lease cannot be taken before it expires,
    so while enough of it is left nobody else can hold the thread. Raises LeaseLost."""
    if lease.remaining() >= needed:
        return
    seconds = max(
        lease.seconds, needed * 2
    )  # twice what is needed: the next requests need no write
    started = lease.clock()
    renewed = Thread.objects.filter(_worker_filter(lease)).update(
        lease_expires_at=Now() + timedelta(seconds=seconds)
    )
    if not renewed:
        raise LeaseLost(f"thread {lease.thread_pk}: the lease was taken over")
    lease.valid_until = started + seconds


def _fenced_update(lease: Lease, **fields: Any) -> None:
    if not Thread.objects.filter(_worker_filter(lease)).update(**fields, updated_at=Now()):
        raise LeaseLost(f"thread {lease.thread_pk}: the lease was taken over")


def set_totals(lease: Lease, items_total: int, warning_count: int) -> None:
    _fenced_update(lease, items_total=items_total, warning_count=warning_count)


def start_conversation(
    lease: Lease, conversation_id: str, options: dict[str, Any], **totals: int
) -> Conversation:
    """Record the conversation just created (empty) as the thread's live one, in the transaction
    that moves the thread on (with the thread's `items_total` and `warning_count`, if given).
    Raises LeaseLost: the empty conversation is then left behind."""
    assert set(totals) <= {"items_total", "warning_count"}, totals
    with transaction.atomic():
        if not Thread.objects.filter(_worker_filter(lease), conversation_id="").update(
            conversation_id=conversation_id,
            items_committed=0,
            last_item_id="",
            updated_at=Now(),
            **totals,
        ):
            raise LeaseLost(f"thread {lease.thread_pk}: the lease was taken over")
        return Conversation.objects.create(
            thread_id=lease.thread_pk, conversation_id=conversation_id, options=options
        )


def record_progress(lease: Lease, committed: int, last_item_id: str) -> None:
    """The items the live conversation holds: stored after every write, before anything else."""
    _fenced_update(lease, items_committed=committed, last_item_id=last_item_id)


def succeed(
    lease: Lease,
    attempt_pk: int,
    verified_count: int,
    last_item_id: str | None = None,
    **attempt: Any,
) -> None:
    """Verified: the thread is done, its conversation marked verified, its attempt closed.
    `last_item_id`: the verified conversation's last item, if the caller knows it (else the
    thread's, read in the statement)."""
    with transaction.atomic():
        _fenced_update(lease, status=ThreadStatus.SUCCEEDED, **RELEASE, **CLEAR_ERROR)
        last_item: str | Subquery = last_item_id or Subquery(
            Thread.objects.filter(pk=lease.thread_pk).values("last_item_id")[:1]
        )
        Conversation.objects.live().filter(thread_id=lease.thread_pk).update(
            verified_at=Now(),
            verified_item_count=verified_count,
            items_committed=verified_count,
            last_item_id=last_item,
        )
        _close_attempt(attempt_pk, Attempt.Outcome.SUCCEEDED, **attempt)


def fail(lease: Lease, attempt_pk: int, failure: ApiFailure, **attempt: Any) -> None:
    """The thread failed with a reason staff can read; raises LeaseLost (recording nothing) if
    another worker holds it now."""
    with transaction.atomic():
        _fenced_update(lease, status=ThreadStatus.FAILED, **RELEASE, **_error_fields(failure))
        _close_attempt(attempt_pk, Attempt.Outcome.FAILED, **_attempt_error(failure), **attempt)


def _error_fields(failure: ApiFailure) -> dict[str, Any]:
    return {
        "error_kind": failure.kind,
        "error_message": failure.message[:ERROR_MESSAGE_LIMIT],
        "error_http_status": failure.http_status,
        "error_request_id": failure.request_id,
    }


def _attempt_error(failure: ApiFailure) -> dict[str, Any]:
    """The same fields under the names an Attempt gives them."""
    fields = _error_fields(failure)
    fields["http_status"] = fields.pop("error_http_status")
    fields["request_id"] = fields.pop("error_request_id")
    return fields


# --- the history rows of workers ----------------------------------------------------------------
def open_attempt(
    lease: Lease, action: str, actor_label: str, attempt_number: int | None = None
) -> Attempt:
    """The history row of a worker's attempt. `attempt_number`: the thread's `attempts` as read
    after taking it, if the caller has it (else read here)."""
    if attempt_number is None:
        attempts = Thread.objects.filter(pk=lease.thread_pk).values_list("attempts", flat=True)
        attempt_number = attempts.first() or 0
    return Attempt.objects.create(
        thread_id=lease.thread_pk,
        action=action,
        outcome=Attempt.Outcome.STARTED,
        actor_label=actor_label,
        attempt_number=attempt_number,
        lease_owner=lease.owner,
    )


def _close_attempt(attempt_pk: int, outcome: str, **fields: Any) -> bool:
    return bool(
        Attempt.objects.filter(pk=attempt_pk, outcome=Attempt.Outcome.STARTED).update(
            outcome=outcome, finished_at=Now(), **fields
        )
    )


def abandon_attempt(attempt_pk: int, reason: str) -> bool:
    """A worker that lost its lease says why it stopped (its own account replaces the
    sweeper's, which could only say that the lease expired)."""
    return bool(
        Attempt.objects.filter(
            pk=attempt_pk, outcome__in=[Attempt.Outcome.STARTED, Attempt.Outcome.ABANDONED]
        ).update(outcome=Attempt.Outcome.ABANDONED, finished_at=Now(), error_message=reason)
    )


def _close_open_attempts(threads: Q, reason: str) -> int:
    """Attempts still "started" whose worker no longer holds the thread: it died, or froze and
    lost its lease. Their threads are resumed by someone else."""
    holder = Thread.objects.filter(
        pk=OuterRef("thread_id"), status=ThreadStatus.RUNNING, lease_owner=OuterRef("lease_owner")
    )
    return (
        Attempt.objects.filter(threads, outcome=Attempt.Outcome.STARTED)
        .exclude(lease_owner="")
        .exclude(Exists(holder))
        .update(outcome=Attempt.Outcome.ABANDONED, finished_at=Now(), error_message=reason)
    )


# --- staff actions: queue, cancel ---------------------------------------------------------------
def queue(
    pks: Sequence[int],
    action: str,
    *,
    group: str,
    user: User | None = None,
    actor_label: str = "",
    enqueue: bool = True,
) -> list[int]:
    """Queue the threads among `pks` that `action` still applies to, with one history row each
    and (unless the caller runs them itself) their tasks, all in one transaction: a thread is
    never queued without the task that will run it. Returns the pks queued."""
    with transaction.atomic():
        changed = _lock(pks, ELIGIBLE[action])
        if not changed:
            return []
        replaced = _replace_conversations(changed) if action == "remigrate" else {}
        fields: dict[str, Any] = {
            "status": ThreadStatus.QUEUED,
            "task_group": group,
            "requested_action": action,
            "queued_task": None,
            "updated_at": Now(),
            **RELEASE,
            **CLEAR_ERROR,
        }
        if action == "remigrate":
            fields.update(conversation_id="", items_committed=0, last_item_id="")
        Thread.objects.filter(pk__in=changed).update(**fields)
        if enqueue:
            _enqueue(changed, group)
        else:
            Thread.objects.filter(pk__in=changed).update(queued_task=RUN_INLINE)
        now = timezone.now()
        Attempt.objects.bulk_create(
            Attempt(
                thread_id=pk,
                action=action,
                outcome=Attempt.Outcome.QUEUED,
                actor=user,
                actor_label=actor_label,
                started_at=now,
                finished_at=now,
                conversation_id=replaced.get(pk, ""),
                detail={"group": group, **({"replaced": replaced[pk]} if pk in replaced else {})},
            )
            for pk in changed
        )
    return changed


def cancel(
    pks: Sequence[int], *, group: str, user: User | None = None, actor_label: str = ""
) -> list[int]:
    """Cancel queued threads: their task skips them when it runs."""
    with transaction.atomic():
        changed = _lock(pks, ELIGIBLE["cancel"])
        Thread.objects.filter(pk__in=changed, status=ThreadStatus.QUEUED).update(
            status=ThreadStatus.CANCELLED, queued_task=None, task_group=group, updated_at=Now()
        )
        now = timezone.now()
        Attempt.objects.bulk_create(
            Attempt(
                thread_id=pk,
                action=Attempt.Action.CANCEL,
                outcome=Attempt.Outcome.CANCELLED,
                actor=user,
                actor_label=actor_label,
                started_at=now,
                finished_at=now,
                detail={"group": group},
            )
            for pk in changed
        )
    return changed


def _lock(pks: Iterable[int], condition: Q) -> list[int]:
    return list(
        Thread.objects.select_for_update()
        .filter(condition, pk__in=list(pks))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _replace_conversations(pks: list[int]) -> dict[int, str]:
    """The live conversations of `pks`, marked replaced (kept as history); {thread pk: id}."""
    live = Conversation.objects.live().filter(thread_id__in=pks)
    replaced = dict(live.values_list("thread_id", "conversation_id"))
    live.update(replaced_at=Now())
    return replaced


def _enqueue(pks: list[int], group: str) -> None:
    """One task per small group of threads, in the caller's transaction (the ORM broker writes
    to the same database), each thread pointing at its task's broker row. The longest threads
    go first: a thread's batches are written one after another, so a long thread queued last
    would keep the run going long after the others are done."""
    size = settings.MIGRATION_TASK_GROUP_SIZE
    sizes = dict(Thread.objects.filter(pk__in=pks).values_list("pk", "message_count"))
    pks = sorted(pks, key=lambda pk: -sizes.get(pk, 0))
    broker = _recording_broker()
    rows = []
    for number, start in enumerate(range(0, len(pks), size), start=1):
        part = pks[start : start + size]
        _async_task(part, group, f"{group} #{number}", broker)
        rows.append((part, broker.last_row if broker else None))
    Thread.objects.filter(pk__in=pks).update(
        queued_task=Case(*(When(pk__in=part, then=Value(row)) for part, row in rows))
    )


def _async_task(pks: list[int], group: str, name: str, broker: Any) -> None:
    from django_q.tasks import async_task

    options = {"broker": broker} if broker else {}
    async_task(TASK_FUNCTION, pks, group=group, task_name=name, **PER_THREAD_TASK, **options)


def _recording_broker() -> Any:
    """django-q2's ORM broker, remembering the row of the last task it queued; None when the
    cluster uses another broker (its tasks are not rows we can look up)."""
    from django_q.conf import Conf

    if not Conf.ORM or Conf.BROKER_CLASS:
        return None
    return _recording_broker_class()(list_key=Conf.CLUSTER_NAME)


@functools.cache
def _recording_broker_class() -> type:
    from django_q.brokers.orm import ORM

    class RecordingBroker(ORM):
        last_row: int | None = None

        def enqueue(self, task: str) -> int:
            self.last_row = super().enqueue(task)
            return self.last_row

    return RecordingBroker


def hand_to_queue(group: str) -> int:
    """Threads an inline run queued for itself and did not start: to the workers' queue."""
    with transaction.atomic():
        pks = list(
            Thread.objects.select_for_update()
            .filter(status=ThreadStatus.QUEUED, queued_task=RUN_INLINE, task_group=group)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if pks:
            _enqueue(pks, group)
    return len(pks)


# --- the sweeper --------------------------------------------------------------------------------
SWEEP_CHUNK = 2000


@dataclass
class Sweep:
    resumed: int = 0  # running threads whose lease expired, queued again
    requeued: int = 0  # queued threads whose task no longer exists, queued again
    abandoned: int = 0  # attempts of workers that stopped without a word


def sweep(group: str) -> Sweep:
    """Nothing stays running, queued or "started" without a worker or task that will finish it."""
    result = Sweep()
    with transaction.atomic():
        expired = _lock_some(Q(status=ThreadStatus.RUNNING, lease_expires_at__lt=Now()))
        result.resumed = _requeue(expired, group)
    with transaction.atomic():
        result.requeued = _requeue(_lock_some(_orphaned_in_queue()), group)
    result.abandoned = _close_open_attempts(Q(), "the worker stopped without finishing")
    return result


def _lock_some(condition: Q) -> list[int]:
    return list(
        Thread.objects.select_for_update(skip_locked=True)
        .filter(condition)
        .order_by("pk")
        .values_list("pk", flat=True)[:SWEEP_CHUNK]
    )


def _orphaned_in_queue() -> Q:
    """Queued threads whose task is gone (purged, timed out, failed before taking them), and
    those of an inline run that stopped (no task; queued for longer than two leases)."""
    inline_grace = timedelta(seconds=2 * settings.MIGRATION_LEASE_SECONDS)
    queued = Q(status=ThreadStatus.QUEUED)
    inline = Q(queued_task=RUN_INLINE, updated_at__lt=Now() - inline_grace)
    if _recording_broker() is None:
        return queued & inline
    from django_q.models import OrmQ

    task_row = OrmQ.objects.filter(pk=OuterRef("queued_task"))
    return queued & (inline | (Q(queued_task__gt=RUN_INLINE) & Q(~Exists(task_row))))


def _requeue(pks: list[int], group: str) -> int:
    if not pks:
        return 0
    Thread.objects.filter(pk__in=pks).update(
        status=ThreadStatus.QUEUED, task_group=group, queued_task=None, updated_at=Now(), **RELEASE
    )
    _close_open_attempts(Q(thread_id__in=pks), "its lease expired: the worker stopped or froze")
    _enqueue(pks, group)
    return len(pks)


# --- the mirror: fetching from the source -------------------------------------------------------
def lock_writable_mirrors(thread_pks: Iterable[int], lease_owner: str = "") -> list[int]:
    """Lock (until the caller's transaction ends) the threads whose mirror may be replaced now:
    not running and no upload started, or held by the caller's own lease. Call inside a
    transaction, then write mirror fields only for the pks returned."""
    writable = ELIGIBLE["fetch"]
    if lease_owner:
        writable |= Q(status=ThreadStatus.RUNNING, lease_owner=lease_owner)
    return _lock(thread_pks, writable)


FOUND_AGAIN_ERRORS = [ErrorKind.NOT_FOUND, ErrorKind.NOT_EXPORTED]


def found_again(thread_pks: Iterable[int]) -> int:
    """Threads that failed as not found (at the source, or in an export) and have now been
    fetched or loaded go back to pending."""
    return Thread.objects.filter(
        pk__in=list(thread_pks), status=ThreadStatus.FAILED, error_kind__in=FOUND_AGAIN_ERRORS
    ).update(status=ThreadStatus.PENDING, updated_at=Now(), **CLEAR_ERROR)


def fetch_failed(thread_pk: int, failure: ApiFailure) -> bool:
    """A staff fetch that failed marks the thread failed, unless it has moved on meanwhile (a
    worker runs it, its upload started): a stale fetch result never overwrites a live thread."""
    return bool(
        Thread.objects.filter(ELIGIBLE["fetch"], pk=thread_pk)
        .exclude(status=ThreadStatus.QUEUED)
        .update(status=ThreadStatus.FAILED, updated_at=Now(), **RELEASE, **_error_fields(failure))
    )


# --- the mirror: threads an export could not read -----------------------------------------------
# Where "not in the export" may be recorded: a thread nothing better is known of (never mirrored,
# not queued, running or migrated, no upload started). A thread mirrored from another export or
# a fetch keeps its mirror and its state.
NOT_EXPORTED_WRITABLE = (
    Q(
        data__isnull=True,
        status__in=[ThreadStatus.PENDING, ThreadStatus.CANCELLED, ThreadStatus.FAILED],
    )
    & ~UPLOAD_STARTED
)


def not_exported(reasons: dict[str, str], import_batch_id: int | None) -> tuple[set[str], set[str]]:
    """Threads an export names but its exporter could not read ({thread id: reason}): the new
    ones registered as failed "not in the export", the others marked so where
    NOT_EXPORTED_WRITABLE allows (fenced, one UPDATE per reason). Returns (thread ids
    registered, thread ids marked); the rest were left as they are."""
    from migrations_app.models import ExportState

    ids = list(reasons)
    with transaction.atomic():
        known = set(Thread.objects.filter(thread_id__in=ids).values_list("thread_id", flat=True))
        Thread.objects.bulk_create(
            [
                Thread(
                    thread_id=thread_id,
                    import_batch_id=import_batch_id,
                    status=ThreadStatus.FAILED,
                    error_kind=ErrorKind.NOT_EXPORTED,
                    error_message=reasons[thread_id][:ERROR_MESSAGE_LIMIT],
                    export_state=ExportState.UNREAD,
                )
                for thread_id in ids
                if thread_id not in known
            ],
            ignore_conflicts=True,  # registered meanwhile: then it is marked below, if it may be
        )
        by_reason: dict[str, list[str]] = {}
        for thread_id in known:
            by_reason.setdefault(reasons[thread_id], []).append(thread_id)
        marked: set[str] = set()
        for reason, thread_ids in by_reason.items():
            pks = _lock(
                Thread.objects.filter(thread_id__in=thread_ids).values_list("pk", flat=True),
                NOT_EXPORTED_WRITABLE,
            )
            Thread.objects.filter(pk__in=pks).update(
                status=ThreadStatus.FAILED,
                error_kind=ErrorKind.NOT_EXPORTED,
                error_message=reason[:ERROR_MESSAGE_LIMIT],
                error_http_status=None,
                error_request_id="",
                updated_at=Now(),
                **RELEASE,
            )
            marked.update(Thread.objects.filter(pk__in=pks).values_list("thread_id", flat=True))
    return set(ids) - known, marked

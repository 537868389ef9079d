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
    Value,
    When,
)
from django.db.models.functions import Now
from django.utils import timezone

from migrations_app import sql
from migrations_app.models import (
    Attempt,
    Conversation,
    ErrorKind,
    ImportBatch,
    Message,
    Thread,
    ThreadStatus,
    WriteClaim,
)
from migrations_app.reasons import error_template

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from migrations_app.openai_client import ApiFailure

Clock = Callable[[], float]
ERROR_MESSAGE_LIMIT = 4000
MAX_ITEMS_PER_WRITE = 20  # conversion.MAX_ITEMS_PER_CALL: the most one write can hold
TASK_FUNCTION = "migrations_app.tasks.migrate_threads"
RUN_INLINE = 0  # queued_task of threads queued for an inline run (migrate_threads --inline)
# Options for the per-thread tasks (migrate, fetch). To save a successful task django-q2 first
# loads every saved success (up to Q_CLUSTER's save_limit, each unpickled) to prune the oldest:
# at 10,000 requests a minute that was a sixth of the cluster's CPU and grows with the table. A
# thread's own history (its Attempt rows) already says what its task did; failures are saved.
PER_THREAD_TASK = {"save": False}
CLEAR_ERROR = {"error_kind": "", "error_message": "", "error_template": "",
               "error_http_status": None, "error_request_id": ""}  # fmt: skip
RELEASE = {"lease_owner": "", "lease_expires_at": None}


class LeaseLost(Exception):
    """Another worker holds the thread now (or staff changed it): stop, write nothing more."""


class Diverged(Exception):
    """A sync found the thread at the source no longer starts with what was migrated."""


class ClaimsChanged(Exception):
    """The worker still holds the thread, but a write it has not seen was announced since it
    verified (a late write of a worker that lost its lease): verify again before succeeding."""


# --- which action applies to which state: the remedies ------------------------------------------
# The upload has started once a live conversation exists: from then on the mirror is what the
# conversation was built from, and a fetch would change the input under it.
UPLOAD_STARTED = ~Q(conversation_id="")
# A retry would fail the same way (a lost conversation cannot be resumed into either).
DEAD_END_ERRORS = [ErrorKind.NOT_FOUND, ErrorKind.CONFLICT, ErrorKind.LOST, ErrorKind.NOT_EXPORTED]
RETRYABLE_FAILURE = Q(status=ThreadStatus.FAILED) & ~Q(error_kind__in=DEAD_END_ERRORS)

# The thread's source data is in the mirror (fetched, or loaded from an export): an upload needs
# nothing more from the source.
MIRRORED = Q(data__isnull=False)
# Failed as not found at the source, yet mirrored: the mirror holds everything an upload needs, so
# migrating it works where fetching again cannot (a thread loaded from an export before the
# source lost it; such threads stay as they were when a fetch fails now: see fetch_failed).
MIRRORED_NOT_FOUND = Q(status=ThreadStatus.FAILED, error_kind=ErrorKind.NOT_FOUND) & MIRRORED

ELIGIBLE = {
    "migrate": Q(status__in=[ThreadStatus.PENDING, ThreadStatus.CANCELLED])
    | RETRYABLE_FAILURE
    | (MIRRORED_NOT_FOUND & ~UPLOAD_STARTED),
    "retry": Q(status=ThreadStatus.CANCELLED) | RETRYABLE_FAILURE,
    "remigrate": Q(status=ThreadStatus.SUCCEEDED)
    | (Q(status=ThreadStatus.FAILED) & UPLOAD_STARTED),
    "cancel": Q(status=ThreadStatus.QUEUED),
    "fetch": ~Q(status=ThreadStatus.RUNNING) & ~UPLOAD_STARTED,
    # A migrated thread whose source still matches, in a batch not cut over (sync.py).
    "sync": Q(status=ThreadStatus.SUCCEEDED, diverged="")
    & ~Q(import_batch__in=ImportBatch.objects.filter(cutover=ImportBatch.Cutover.CUT_OVER)),
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


def skip_reason(
    action: str, status: str, error_kind: str, upload_started: bool, *, source: bool = True
) -> str:
    """Why `action` does not apply to a thread in this state, in words for a confirmation page.
    `source`: whether a source API is configured to fetch threads from."""
    if status == ThreadStatus.RUNNING:
        return "running now" + (" (it will finish)" if action == "cancel" else "")
    if action == "fetch":
        return "upload started: the mirror is kept as it was uploaded (use re-migrate)"
    if status == ThreadStatus.QUEUED:
        return "already queued"
    if action == "cancel":
        return CANCEL_SKIPS.get(status, "not queued")
    if action == "sync":
        if status == ThreadStatus.SUCCEEDED:
            return "diverged from the source, or its import batch is cut over"
        return "not migrated yet (a sync appends to a migrated conversation)"
    if status == ThreadStatus.SUCCEEDED:
        if action == "migrate":
            return "already migrated (use re-migrate to create a new conversation)"
        return "already migrated"
    if error_kind == ErrorKind.NOT_FOUND:
        if not source:
            return "not found at the source and not mirrored (load an export that holds it)"
        return "not found at the source (fetch again once the id or source is fixed)"
    if error_kind == ErrorKind.NOT_EXPORTED:
        return "not in the export (fetch it from a source, or load an export that holds it)"
    if error_kind == ErrorKind.CONFLICT:
        return "its conversation does not match (use re-migrate)"
    if error_kind == ErrorKind.LOST:
        return "its conversation was lost at the destination (use re-migrate)"
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
    ErrorKind.DESTINATION_NOT_FOUND: "remigrate",
    ErrorKind.LOST: "remigrate",
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


def thread_remedy_action(thread: Thread, *, source: bool = True) -> str | None:
    """The action that moves this thread on (the thread page's primary button), if any: the
    remedy of a failed thread, migrate for one pending or cancelled. None when nothing in the
    console can (not mirrored, and no source configured to fetch it from)."""
    if thread.status in (ThreadStatus.PENDING, ThreadStatus.CANCELLED):
        return "migrate" if source or thread.data is not None else None
    if thread.status != ThreadStatus.FAILED:
        return None
    if thread.error_kind == ErrorKind.NOT_FOUND:
        if thread.conversation_id:  # the destination lost the conversation
            return "remigrate"
        if thread.data is not None:
            return "migrate"
        return "fetch" if source else None
    if thread.error_kind == ErrorKind.NOT_EXPORTED:
        return "fetch" if source else None
    return remedy_action(thread.error_kind)


def remedy(thread: Thread, *, source: bool = True) -> str:
    """What staff can do about a failed thread, in one sentence. `source`: whether a source API
    is configured to fetch threads from."""
    if thread.status != ThreadStatus.FAILED:
        return ""
    if thread.error_kind == ErrorKind.NOT_FOUND and not thread.conversation_id:
        if thread.data is not None:
            return (
                "The mirror holds this thread, so the source is not needed: migrate it from the "
                "mirror."
            )
        if not source:
            return (
                "No source API is configured: load an export that holds this thread (Import "
                "threads); it then goes back to pending."
            )
        return "Fix the id or the source, then fetch it again."
    if thread.error_kind == ErrorKind.NOT_FOUND:
        return "The destination no longer knows its conversation: re-migrate it into a new one."
    if thread.error_kind == ErrorKind.NOT_EXPORTED:
        if source:
            return "Fetch it again from the source, or load an export that holds it."
        return (
            "Load an export that holds it (Import threads): its exporter could not read it, "
            "and no source API is configured to fetch it from."
        )
    if thread.error_kind == ErrorKind.CONFLICT:
        return "Re-migrate it into a new conversation (the old one stays in the history)."
    if thread.error_kind == ErrorKind.DESTINATION_NOT_FOUND:
        return (
            "If OPENAI_API_KEY names another project than the one the conversation was created "
            "in, fix the key and retry; if the conversation was deleted, re-migrate it into a "
            "new one (the old id stays in the history)."
        )
    if thread.error_kind == ErrorKind.DATABASE:
        return "Retry it once the console's database answers again: it resumes where it stopped."
    if thread.error_kind == ErrorKind.LOST:
        return (
            "Its conversation is gone or changed at the destination: re-migrate it into a new "
            "conversation (the old id stays in the history), and give the applications the new id."
        )
    if thread.conversation_id:
        return "Retry resumes the upload where it stopped; re-migrate starts a new conversation."
    return "Retry it once the cause is fixed."


# --- a worker's lease ----------------------------------------------------------------------------
@dataclass
class Lease:
    """A worker's hold on one thread. `valid_until` is by the worker's own clock and errs early:
    it is counted from before the statement that set the lease, which the database timed later.
    `thread`: the row as the take left it, when the take read it back."""

    thread_pk: int
    owner: str
    seconds: float
    valid_until: float
    clock: Clock = time.monotonic
    thread: Thread | None = None

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
    if sql.returning():
        lease.thread = _take_queued(thread_pk, owner, seconds)
        if lease.thread is not None:
            return lease
    elif Thread.objects.filter(pk=thread_pk, status=ThreadStatus.QUEUED).update(**fields):
        return lease
    with transaction.atomic():
        expired = _lock_leases_ended(Q(pk=thread_pk, lease_expires_at__lt=Now()), skip_locked=False)
        if not expired:
            return None
        Thread.objects.filter(pk=thread_pk).update(**fields)
        _close_open_attempts(Q(thread_id=thread_pk), "its lease expired and was taken over")
    return lease


def _take_queued(thread_pk: int, owner: str, seconds: float) -> Thread | None:
    """The take of a queued thread, read back in the same statement (see sql.py)."""
    thread, until = sql.table(Thread), sql.now_plus(seconds)
    rows = sql.rows(
        f"UPDATE {thread} SET status = %s, lease_owner = %s, lease_expires_at = {until[0]}, "
        f"attempts = attempts + 1, queued_task = NULL, updated_at = {sql.now()} "
        f"WHERE id = %s AND status = %s RETURNING {sql.columns(Thread)}",
        [ThreadStatus.RUNNING, owner, *until[1], thread_pk, ThreadStatus.QUEUED],
    )
    return sql.instance(Thread, rows[0]) if rows else None


# The fence of every statement a worker makes under its lease (`_worker_filter`), in SQL.
LEASE_FENCE = "id = %s AND status = %s AND lease_owner = %s"


def _fence(lease: Lease) -> list[Any]:
    return [lease.thread_pk, ThreadStatus.RUNNING, lease.owner]


# What a lease that ended without its owner may have left in flight: the next batch, written
# after the last item the owner recorded (the engine writes nothing else while it holds a lease).
LEASE_FIELDS = ["pk", "lease_owner", "conversation_id", "items_committed", "last_item_id"]


def _lock_leases_ended(condition: Q, *, skip_locked: bool, limit: int | None = None) -> list[int]:
    """Lock running threads matching `condition` whose lease ends without its owner (expired;
    the caller takes or re-queues them in its transaction), and claim the write each owner may
    still have in flight (DESIGN.md, "Provenance"): whoever resumes the thread may then take
    back a copy of it, whenever it lands. Returns their pks."""
    rows = Thread.objects.select_for_update(skip_locked=skip_locked).filter(
        condition, status=ThreadStatus.RUNNING
    )
    found = list(rows.order_by("pk").values(*LEASE_FIELDS)[:limit])
    writing = [row for row in found if row["conversation_id"]]
    if writing:
        WriteClaim.objects.bulk_create(
            WriteClaim(
                thread_id=row["pk"],
                conversation_id=row["conversation_id"],
                start=row["items_committed"],
                count=MAX_ITEMS_PER_WRITE,
                after_item_id=row["last_item_id"],
                owner=row["lease_owner"],
                reason=WriteClaim.Reason.TAKEOVER,
            )
            for row in writing
        )
        Thread.objects.filter(pk__in=[row["pk"] for row in writing]).update(
            claim_seq=F("claim_seq") + 1
        )
    return [row["pk"] for row in found]


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
    values, params = sql.assignments(
        Thread, {"conversation_id": conversation_id, "items_committed": 0, "last_item_id": "",
                 **totals}
    )  # fmt: skip
    update = (
        f"UPDATE {sql.table(Thread)} SET {values}, updated_at = {sql.now()} "
        f"WHERE {LEASE_FENCE} AND conversation_id = ''"
    )
    row = {"thread_id": lease.thread_pk, "conversation_id": conversation_id, "options": options}
    if sql.one_statement():
        given_that = (f"WITH done AS ({update} RETURNING id)", [*params, *_fence(lease)])
        started = sql.insert_if(Conversation, row, given_that)
        if started is None:
            raise LeaseLost(f"thread {lease.thread_pk}: the lease was taken over")
        return started
    with transaction.atomic():
        if not sql.run(update, [*params, *_fence(lease)]):
            raise LeaseLost(f"thread {lease.thread_pk}: the lease was taken over")
        return sql.insert(Conversation, row)


def record_progress(lease: Lease, committed: int, last_item_id: str) -> None:
    """The items the live conversation holds: stored after every write, before anything else."""
    if not sql.run(
        f"UPDATE {sql.table(Thread)} SET items_committed = %s, last_item_id = %s, "
        f"updated_at = {sql.now()} WHERE {LEASE_FENCE}",
        [committed, last_item_id, *_fence(lease)],
    ):
        raise LeaseLost(f"thread {lease.thread_pk}: the lease was taken over")


@dataclass(frozen=True)
class ThreadNow:
    """A thread's state as a claim found it."""

    status: str
    conversation_id: str
    lease_owner: str
    claim_seq: int


def record_claim(
    thread_pk: int,
    conversation_id: str,
    *,
    start: int,
    count: int,
    after_item_id: str,
    owner: str,
    reason: str,
    item_ids: Sequence[str] | None = None,
) -> ThreadNow | None:
    """Record a write that may have reached `conversation_id` unrecorded, whoever holds the
    thread now (a worker that lost its lease announces its late write this way), and count it
    on the thread in the same transaction, so that an owner's `succeed` fenced on the count
    cannot miss it. Returns the thread's state after it (None if the thread is gone)."""
    with transaction.atomic():
        row = (
            Thread.objects.select_for_update()
            .filter(pk=thread_pk)
            .values("status", "conversation_id", "lease_owner", "claim_seq")
            .first()
        )
        if row is None:
            return None
        WriteClaim.objects.create(
            thread_id=thread_pk,
            conversation_id=conversation_id,
            start=start,
            count=count,
            after_item_id=after_item_id,
            owner=owner,
            reason=reason,
            item_ids=list(item_ids) if item_ids is not None else None,
        )
        Thread.objects.filter(pk=thread_pk).update(claim_seq=F("claim_seq") + 1)
    return ThreadNow(row["status"], row["conversation_id"], row["lease_owner"],
                     row["claim_seq"] + 1)  # fmt: skip


def claims_on(thread_pk: int, conversation_id: str) -> list[WriteClaim]:
    return list(WriteClaim.objects.filter(thread_id=thread_pk, conversation_id=conversation_id))


def claim_seq(thread_pk: int) -> int:
    return Thread.objects.filter(pk=thread_pk).values_list("claim_seq", flat=True).first() or 0


def reopen_for_repair(
    thread_pk: int, conversation_id: str, owner: str, seconds: float, clock: Clock = time.monotonic
) -> Lease | None:
    """A lease on a succeeded thread, for the worker whose late write landed in its verified
    conversation after the fact: it takes its copies back and verifies again. The conversation
    stays the thread's (the mapping never changes). None if the thread moved on (re-migrated,
    already reopened)."""
    started = clock()
    reopened = Thread.objects.filter(
        pk=thread_pk, status=ThreadStatus.SUCCEEDED, conversation_id=conversation_id
    ).update(
        status=ThreadStatus.RUNNING,
        lease_owner=owner,
        lease_expires_at=Now() + timedelta(seconds=seconds),
        attempts=F("attempts") + 1,
        requested_action=Attempt.Action.REPAIR,
        updated_at=Now(),
    )
    return Lease(thread_pk, owner, seconds, started + seconds, clock) if reopened else None


def succeed(
    lease: Lease,
    attempt_pk: int,
    verified_count: int,
    last_item_id: str | None = None,
    *,
    claim_seq: int | None = None,
    **attempt: Any,
) -> None:
    """Verified: the thread is done, its conversation marked verified, its attempt closed.
    `last_item_id`: the verified conversation's last item, if the caller knows it (else the
    thread's, read in the statement). `claim_seq`: the thread's claim count the verification
    listed with; if a claim was recorded since (a late write announced after that listing),
    nothing changes and ClaimsChanged is raised (LeaseLost if the lease is gone)."""
    thread, conversation, now = sql.table(Thread), sql.table(Conversation), sql.now()
    cleared, cleared_params = sql.assignments(
        Thread, {"status": ThreadStatus.SUCCEEDED, "requested_action": "", **RELEASE, **CLEAR_ERROR}
    )
    fence, fence_params = LEASE_FENCE, _fence(lease)
    if claim_seq is not None:
        fence, fence_params = f"{fence} AND claim_seq = %s", [*fence_params, claim_seq]
    # The last source message the verified conversation now holds: the next sync lists after it.
    last_message = (
        f"(SELECT message_id FROM {sql.table(Message)} WHERE thread_id = %s "
        "ORDER BY position DESC LIMIT 1)"
    )
    last_item = "%s" if last_item_id else f"(SELECT last_item_id FROM {thread} WHERE id = %s)"
    done = (
        f"UPDATE {thread} SET {cleared}, updated_at = {now}, synced_at = {now}, "
        f"synced_message_id = COALESCE({last_message}, '') WHERE {fence}",
        [*cleared_params, lease.thread_pk, *fence_params],
    )
    verified = (
        f"UPDATE {conversation} SET verified_at = {now}, verified_item_count = %s, "
        f"items_committed = %s, last_item_id = {last_item} "
        "WHERE thread_id = %s AND replaced_at IS NULL",
        [verified_count, verified_count, last_item_id or lease.thread_pk, lease.thread_pk],
    )
    closed = _closing(attempt_pk, Attempt.Outcome.SUCCEEDED, **attempt)
    if sql.one_statement():  # the three in one round trip, each after the fenced one only
        moved = sql.rows(
            f"WITH done AS ({done[0]} RETURNING id), "
            f"verified AS ({verified[0]} AND EXISTS (SELECT 1 FROM done)), "
            f"closed AS ({closed[0]} AND EXISTS (SELECT 1 FROM done)) SELECT count(*) FROM done",
            [*done[1], *verified[1], *closed[1]],
        )[0][0]
    else:
        with transaction.atomic():
            moved = sql.run(*done)
            if moved:
                sql.run(*verified)
                sql.run(*closed)
    if not moved:
        if claim_seq is not None and Thread.objects.filter(_worker_filter(lease)).exists():
            raise ClaimsChanged(f"thread {lease.thread_pk}: a write was announced")
        raise LeaseLost(f"thread {lease.thread_pk}: the lease was taken over")


def diverge(lease: Lease, attempt_pk: int, reason: str, **attempt: Any) -> None:
    """A sync found that the source no longer matches what was migrated: the thread stays
    succeeded with the conversation it had (nothing is rewritten), marked diverged for staff."""
    with transaction.atomic():
        _fenced_update(
            lease, status=ThreadStatus.SUCCEEDED, diverged=reason, requested_action="", **RELEASE
        )
        _close_attempt(attempt_pk, Attempt.Outcome.FAILED, error_kind=ErrorKind.CONFLICT,
                       error_message=reason[:ERROR_MESSAGE_LIMIT], **attempt)  # fmt: skip


def mark_diverged(thread_pk: int, reason: str) -> bool:
    """A sync's check found the source changed under a migrated thread (its last migrated
    message is gone): marked, only while it is still succeeded."""
    return bool(
        Thread.objects.filter(pk=thread_pk, status=ThreadStatus.SUCCEEDED, diverged="").update(
            diverged=reason[:ERROR_MESSAGE_LIMIT], updated_at=Now()
        )
    )


def synced(thread_pks: Sequence[int]) -> int:
    """Threads a sync's check found up to date (one statement for a group)."""
    return Thread.objects.filter(pk__in=list(thread_pks), status=ThreadStatus.SUCCEEDED).update(
        synced_at=Now()
    )


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
        "error_template": error_template(failure.message),
        "error_http_status": failure.http_status,
        "error_request_id": failure.request_id,
    }


def _attempt_error(failure: ApiFailure) -> dict[str, Any]:
    """The same fields under the names an Attempt gives them."""
    fields = _error_fields(failure)
    del fields["error_template"]  # the thread's grouping key; an attempt keeps the message
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
    return sql.insert(
        Attempt,
        {
            "thread_id": lease.thread_pk,
            "action": action,
            "outcome": Attempt.Outcome.STARTED,
            "actor_label": actor_label,
            "attempt_number": attempt_number,
            "lease_owner": lease.owner,
        },
    )


def _close_attempt(attempt_pk: int, outcome: str, **fields: Any) -> bool:
    return bool(sql.run(*_closing(attempt_pk, outcome, **fields)))


def _closing(attempt_pk: int, outcome: str, **fields: Any) -> tuple[str, list[Any]]:
    values, params = sql.assignments(Attempt, {"outcome": outcome, **fields})
    return (
        f"UPDATE {sql.table(Attempt)} SET {values}, finished_at = {sql.now()} "
        "WHERE id = %s AND outcome = %s",
        [*params, attempt_pk, Attempt.Outcome.STARTED],
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
    ahead: bool = False,
) -> list[int]:
    """Queue the threads among `pks` that `action` still applies to, with one history row each
    and (unless the caller runs them itself) their tasks, all in one transaction: a thread is
    never queued without the task that will run it. `ahead`: their tasks go before every task
    already queued (broker.py). Returns the pks queued."""
    with transaction.atomic():
        changed = _lock(pks, ELIGIBLE[action])
        if not changed:
            return []
        before = _states_before(changed) if action in RESTORABLE else {}
        replacing = _request_replacement(changed) if action == "remigrate" else {}
        Thread.objects.filter(pk__in=changed).update(
            status=ThreadStatus.QUEUED,
            task_group=group,
            requested_action=action,
            queued_task=None,
            updated_at=Now(),
            **RELEASE,
            **CLEAR_ERROR,
        )
        if enqueue:
            _enqueue(changed, group, ahead=ahead)
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
                conversation_id=replacing.get(pk, ""),
                detail={
                    "group": group,
                    **({"replaces": replacing[pk]} if pk in replacing else {}),
                    **({"before": before[pk]} if pk in before else {}),
                    **({"ahead": True} if ahead else {}),
                },
            )
            for pk in changed
        )
    return changed


def cancel(
    pks: Sequence[int], *, group: str, user: User | None = None, actor_label: str = ""
) -> list[int]:
    """Cancel queued threads: their task skips them when it runs. A re-migrate that has not
    started goes back to the state it was queued from (a succeeded thread stays succeeded, with
    its conversation and mapping); the others become cancelled."""
    with transaction.atomic():
        changed = _lock(pks, ELIGIBLE["cancel"])
        restored = _restore_unstarted(changed)
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
                detail={"group": group, **({"restored": restored[pk]} if pk in restored else {})},
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


# What a re-migrate's history row keeps of the thread, to restore it if cancelled unstarted.
RESTORED_FIELDS = ["status", "error_kind", "error_message", "error_template", "error_http_status",
                   "error_request_id"]  # fmt: skip


def _states_before(pks: list[int]) -> dict[int, dict[str, Any]]:
    rows = Thread.objects.filter(pk__in=pks).values("pk", *RESTORED_FIELDS)
    return {row.pop("pk"): row for row in rows}


def _request_replacement(pks: list[int]) -> dict[int, str]:
    """A re-migrate's live conversations stay live (and in the mapping) until a worker starts the
    new upload (`begin_remigrate`): only marked. {thread pk: conversation id}."""
    live = Conversation.objects.live().filter(thread_id__in=pks)
    replacing = dict(live.values_list("thread_id", "conversation_id"))
    live.update(replace_requested_at=Now())
    return replacing


# Queued actions that a cancel undoes when their work has not started: the thread goes back to
# the state it was queued from, its conversation and mapping as they were.
RESTORABLE = {"remigrate", "sync"}


def _restore_unstarted(pks: list[int]) -> dict[int, str]:
    """Threads among `pks` queued for a re-migrate whose new upload has not started, or for a
    sync that has added nothing to the mirror yet: back to the state they were queued from.
    {thread pk: the status restored}."""
    remigrates = Conversation.objects.live().filter(
        thread_id__in=pks, replace_requested_at__isnull=False, thread__status=ThreadStatus.QUEUED
    )
    unstarted = set(remigrates.values_list("thread_id", flat=True))
    syncs = Thread.objects.filter(
        pk__in=pks, status=ThreadStatus.QUEUED, requested_action="sync"
    ).values_list("pk", "items_total")
    verified = dict(
        Conversation.objects.live()
        .filter(thread_id__in=[pk for pk, _ in syncs])
        .values_list("thread_id", "verified_item_count")
    )
    unstarted |= {pk for pk, total in syncs if verified.get(pk) == total}
    if not unstarted:
        return {}
    queued = (
        Attempt.objects.filter(
            thread_id__in=unstarted,
            action__in=RESTORABLE,
            outcome=Attempt.Outcome.QUEUED,
        )
        .order_by("started_at", "pk")
        .values_list("thread_id", "detail")
    )
    before = {pk: detail.get("before") for pk, detail in queued}  # each thread's latest
    restored = {}
    for pk in unstarted:
        fields = before.get(pk) or {"status": ThreadStatus.SUCCEEDED}
        Thread.objects.filter(pk=pk).update(
            **fields, requested_action="", queued_task=None, updated_at=Now()
        )
        restored[pk] = fields["status"]
    Conversation.objects.live().filter(thread_id__in=unstarted).update(replace_requested_at=None)
    return restored


def begin_remigrate(lease: Lease) -> str:
    """The worker starts a re-migrate's new upload: the live conversation is replaced now (kept
    as history) and the thread starts over, in one transaction fenced on the lease. Returns the
    replaced conversation's id ("" if none was waiting to be replaced: a resumed re-migrate)."""
    waiting = Conversation.objects.live().filter(
        thread_id=lease.thread_pk, replace_requested_at__isnull=False
    )
    with transaction.atomic():
        replaced = waiting.values_list("conversation_id", flat=True).first()
        if replaced is None:
            return ""
        _fenced_update(lease, conversation_id="", items_committed=0, last_item_id="")
        waiting.update(replaced_at=Now())
    return replaced


def _enqueue(pks: list[int], group: str, *, ahead: bool = False) -> None:
    """One task per small group of threads, in the caller's transaction (the ORM broker writes
    to the same database), each thread pointing at its task's broker row. The longest threads
    go first: a thread's batches are written one after another, so a long thread queued last
    would keep the run going long after the others are done. `ahead`: before every task
    already queued."""
    size = settings.MIGRATION_TASK_GROUP_SIZE
    sizes = dict(Thread.objects.filter(pk__in=pks).values_list("pk", "message_count"))
    pks = sorted(pks, key=lambda pk: -sizes.get(pk, 0))
    broker = _recording_broker(ahead=ahead)
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


def _recording_broker(list_key: str | None = None, ahead: bool = False) -> Any:
    """The console's ORM broker (broker.py) for the cluster's queue (or `list_key`), remembering
    the row of the last task it queued; None when the cluster uses another broker (its tasks are
    not rows we can look up)."""
    from django_q.conf import Conf

    from migrations_app.broker import CLASS_PATH

    if not Conf.ORM or Conf.BROKER_CLASS not in (None, CLASS_PATH):
        return None
    return _recording_broker_class()(list_key=list_key or Conf.CLUSTER_NAME, ahead=ahead)


def recording_broker(list_key: str | None = None) -> Any:
    return _recording_broker(list_key)


@functools.cache
def _recording_broker_class() -> type:
    from migrations_app.broker import OrderedORM

    class RecordingBroker(OrderedORM):
        last_row: int | None = None

        def enqueue(self, task: str) -> int:
            self.last_row = super().enqueue(task)
            return self.last_row

    return RecordingBroker


def hand_back(lease: Lease, attempt_pk: int) -> bool:
    """A stopping worker gives its thread back: queued again with a task of its own, its
    attempt closed. The next worker resumes from the last recorded item. False if the lease
    was no longer this worker's."""
    with transaction.atomic():
        if not Thread.objects.filter(_worker_filter(lease)).update(
            status=ThreadStatus.QUEUED, queued_task=None, updated_at=Now(), **RELEASE
        ):
            return False
        _close_attempt(
            attempt_pk,
            Attempt.Outcome.ABANDONED,
            error_message="Handed back: its worker was stopping; another worker resumes it "
            "from its last recorded item.",
        )
        _enqueue([lease.thread_pk], _task_group_of([lease.thread_pk]))
    return True


def requeue_waiting(pks: Sequence[int]) -> int:
    """Threads a task could not start in time (its worker's threads were all busy, or it was
    stopping) and that are still queued: into a task of their own. Returns how many."""
    with transaction.atomic():
        waiting = _lock(pks, Q(status=ThreadStatus.QUEUED))
        if waiting:
            _enqueue(waiting, _task_group_of(waiting))
    return len(waiting)


def _task_group_of(pks: Sequence[int]) -> str:
    group = Thread.objects.filter(pk__in=pks).values_list("task_group", flat=True).first()
    return group or "resume"


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


# --- an application's lookup: queued ahead -------------------------------------------------------
def move_ahead(pks: Sequence[int], *, group: str, actor_label: str = "") -> list[int]:
    """Threads among `pks` still queued for a worker (not for an inline run) get a task queued
    ahead of every other (broker.py), with a history row each: the task they were queued with
    may be deep in the queue. Whichever task comes first takes the thread; the other finds it
    no longer queued and skips it. Returns the pks moved."""
    with transaction.atomic():
        queued = Q(status=ThreadStatus.QUEUED) & ~Q(queued_task=RUN_INLINE)
        moved = _lock(pks, queued)
        if not moved:
            return []
        actions = dict(Thread.objects.filter(pk__in=moved).values_list("pk", "requested_action"))
        Thread.objects.filter(pk__in=moved).update(task_group=group, updated_at=Now())
        _enqueue(moved, group, ahead=True)
        now = timezone.now()
        Attempt.objects.bulk_create(
            Attempt(
                thread_id=pk,
                action=actions.get(pk) or Attempt.Action.MIGRATE,
                outcome=Attempt.Outcome.QUEUED,
                actor_label=actor_label,
                started_at=now,
                finished_at=now,
                detail={"group": group, "ahead": True, "was_queued": True},
            )
            for pk in moved
        )
    return moved


# --- the retention watchdog: a verified conversation lost at the destination -------------------
def mark_lost(
    thread_pk: int,
    conversation_id: str,
    message: str,
    *,
    http_status: int | None = None,
    request_id: str = "",
    detail: dict[str, Any] | None = None,
) -> bool:
    """The thread's verified conversation is gone or changed at the destination: the thread
    fails as lost (remedy: re-migrate), keeping its conversation id and rows. Applies only to a
    thread still succeeded with that same conversation (one re-migrated meanwhile, or already
    failed, is left alone). Returns whether it applied; the history row says what was found."""
    with transaction.atomic():
        changed = Thread.objects.filter(
            pk=thread_pk, status=ThreadStatus.SUCCEEDED, conversation_id=conversation_id
        ).update(
            status=ThreadStatus.FAILED,
            error_kind=ErrorKind.LOST,
            error_message=message[:ERROR_MESSAGE_LIMIT],
            error_template=error_template(message),
            error_http_status=http_status,
            error_request_id=request_id,
            updated_at=Now(),
        )
        if changed:
            now = timezone.now()
            Attempt.objects.create(
                thread_id=thread_pk,
                action=Attempt.Action.WATCH,
                outcome=Attempt.Outcome.FAILED,
                actor_label="retention watchdog",
                started_at=now,
                finished_at=now,
                conversation_id=conversation_id,
                error_kind=ErrorKind.LOST,
                error_message=message[:ERROR_MESSAGE_LIMIT],
                http_status=http_status,
                request_id=request_id,
                detail=detail or {},
            )
    return bool(changed)


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
        expired = _lock_leases_ended(
            Q(lease_expires_at__lt=Now()), skip_locked=True, limit=SWEEP_CHUNK
        )
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
    """Queued threads that no live task will take, whatever release queued them:
    - their task is gone (purged, timed out, failed before taking them);
    - their task was taken from the queue more than a lease ago by a cluster and they are still
      queued: that cluster died (django-q2 would deliver the task again only after Q_RETRY);
    - they name no task and have waited longer than a lease (queued by a release before
      `queued_task` was kept);
    - an inline run's that stopped (no task; queued for longer than two leases).
    A task that does run after all finds its threads taken (`take` is fenced) and skips them."""
    lease = timedelta(seconds=settings.MIGRATION_LEASE_SECONDS)
    queued = Q(status=ThreadStatus.QUEUED)
    inline = Q(queued_task=RUN_INLINE, updated_at__lt=Now() - 2 * lease)
    if _recording_broker() is None:  # another broker: its tasks are not rows to look up
        return queued & inline
    from django_q.models import OrmQ

    retry = timedelta(seconds=settings.Q_CLUSTER["retry"])
    # A task row is locked until Q_RETRY after the cluster took it: taken over a lease ago.
    taken_long_ago = Q(lock__gt=Now(), lock__lt=Now() + (retry - lease))
    live_task = OrmQ.objects.filter(~taken_long_ago, pk=OuterRef("queued_task"))
    untracked = Q(queued_task__isnull=True, updated_at__lt=Now() - lease)
    task_gone = Q(queued_task__gt=RUN_INLINE) & Q(~Exists(live_task))
    return queued & (inline | untracked | task_gone)


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
    worker runs it, its upload started): a stale fetch result never overwrites a live thread.
    A thread already mirrored keeps its mirror and its state: what the source no longer answers
    takes nothing from what the console holds (the failure is in the fetch's history row)."""
    return bool(
        Thread.objects.filter(ELIGIBLE["fetch"], pk=thread_pk)
        .exclude(status=ThreadStatus.QUEUED)
        .exclude(MIRRORED)
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

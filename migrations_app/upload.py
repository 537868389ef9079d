"""The per-thread migration: lease → fetch if needed → convert → create → add batches → verify.

DESIGN.md "Writing without duplicates or orphans" is the contract:
- the conversation is created empty (metadata only), and its id is stored in the transaction
  that moves the thread on, so an ambiguous create leaves at most an empty conversation;
- items go in batches of ≤20; after each, the committed count and the last server item id are
  stored before anything else happens;
- after an ambiguous write (dropped connection, timeout, 5xx) the items after the last known
  one are listed and compared with what we meant to send before sending again;
- a lease in the database keeps every other worker off the thread; it is renewed before every
  request, and a worker that lost it stops without writing.
"""

import logging
import os
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from migrations_app import intake, openai_client
from migrations_app.conversion import MAX_ITEMS_PER_CALL, item_fingerprint
from migrations_app.models import Attempt, Conversation, ErrorKind, Thread, ThreadStatus
from migrations_app.openai_client import ApiFailure
from migrations_app.preview import preview_thread
from migrations_app.ratelimit import SharedRateLimiter

log = logging.getLogger(__name__)
ITEM_INCLUDE = ["message.input_image.image_url"]
MAX_RATE_LIMITED_RETRIES = 50
APPLIED = object()  # reconciliation found the batch on the server


class LeaseLost(Exception):
    """Another worker holds the thread now; stop without writing."""


class ThreadFailed(Exception):
    def __init__(self, failure):
        super().__init__(failure.message)
        self.failure = failure


def _failure(kind, message):
    return ThreadFailed(ApiFailure(kind=kind, message=message))


def worker_name():
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


@dataclass
class Worker:
    """What a migration run needs from the outside world, injectable for tests."""

    client: object = None
    source_client: object = None
    limiter: SharedRateLimiter = None
    sleeper: object = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    lease_seconds: int = None
    max_retries: int = None
    name: str = field(default_factory=worker_name)
    clock: object = time.monotonic
    # thread pk -> when this worker last extended its lease (by its own clock)
    renewed: dict = field(default_factory=dict)

    def __post_init__(self):
        self.client = self.client or openai_client.destination_client()
        self.limiter = self.limiter or SharedRateLimiter(sleeper=self.sleeper)
        self.lease_seconds = self.lease_seconds or settings.MIGRATION_LEASE_SECONDS
        if self.max_retries is None:
            self.max_retries = settings.MIGRATION_MAX_RETRIES

    def backoff(self, attempt):
        """Exponential with full jitter: 0.5 s, 1 s, 2 s … capped at 30 s."""
        return self.rng.uniform(0, min(30.0, 0.5 * 2**attempt))


# --- the lease ----------------------------------------------------------------------------------
def take_lease(thread_pk, worker):
    """The thread if this worker now holds it, else None. Queued and pending threads can be taken,
    and running threads whose worker died (lease expired)."""
    now = timezone.now()
    taken = (
        Thread.objects.filter(pk=thread_pk)
        .filter(
            Q(status__in=[ThreadStatus.QUEUED, ThreadStatus.PENDING])
            | Q(status=ThreadStatus.RUNNING, lease_expires_at__lt=now)
        )
        .update(
            status=ThreadStatus.RUNNING,
            lease_owner=worker.name,
            lease_expires_at=Thread.lease_deadline(worker.lease_seconds),
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    )
    if not taken:
        return None
    worker.renewed[thread_pk] = worker.clock()
    return Thread.objects.get(pk=thread_pk)


def renew_lease(thread, worker):
    """Extend the lease before a request. While the last extension is fresh (under a third of
    the lease ago) nobody else can hold the thread: a lease is only taken once it expired, so
    the database write is skipped."""
    if worker.clock() - worker.renewed.get(thread.pk, float("-inf")) < worker.lease_seconds / 3:
        return
    renewed = Thread.objects.filter(
        pk=thread.pk, lease_owner=worker.name, status=ThreadStatus.RUNNING
    ).update(lease_expires_at=Thread.lease_deadline(worker.lease_seconds))
    if not renewed:
        raise LeaseLost(f"{thread.thread_id}: lease taken over by another worker")
    worker.renewed[thread.pk] = worker.clock()


# --- calls with retries -------------------------------------------------------------------------
def call_api(thread, worker, request, *, reconcile=None, paced=True):
    """Run one API request with our own retries (the SDK's are off for writes).

    Permanent errors fail the thread at once. Rate limits push the shared budget back and retry.
    Transient errors retry with backoff; for a write, `reconcile` is asked first whether the
    write was applied after all, and its answer returned instead of writing again.
    """
    transient, limited = 0, 0
    while True:
        renew_lease(thread, worker)
        if paced:
            worker.limiter.acquire()
        try:
            return request()
        except Exception as error:
            failure = openai_client.classify(error)
        if failure.is_permanent:
            raise ThreadFailed(failure)
        if failure.kind == ErrorKind.RATE_LIMITED:
            limited += 1
            if limited > MAX_RATE_LIMITED_RETRIES:
                raise ThreadFailed(failure)
            worker.limiter.slow_down(failure.retry_after or worker.backoff(limited))
            continue
        transient += 1
        if reconcile is not None:
            applied = reconcile()
            if applied is not None:
                return applied
        if transient > worker.max_retries:
            raise ThreadFailed(failure)
        worker.sleeper(worker.backoff(transient))


def list_items_after(thread, worker, conversation_id, after):
    """Every item after `after` (or from the start), oldest first, paced page by page."""

    def page(cursor):
        params = {"order": "asc", "limit": 100, "include": ITEM_INCLUDE}
        if cursor:
            params["after"] = cursor
        return openai_client.raw_json(
            worker.client.conversations.items, "list", conversation_id, **params
        )

    items, cursor = [], after
    while True:
        current = call_api(thread, worker, lambda c=cursor: page(c))
        items += current["data"]
        if not current.get("has_more") or not current["data"]:
            return items
        cursor = current["data"][-1]["id"]


# --- the steps ----------------------------------------------------------------------------------
def ensure_mirrored(thread, worker):
    """Fetch the thread first if the mirror does not hold it. Reads are safe to repeat, so
    transient failures and rate limits are retried like any other request."""
    tries = 0
    while thread.data is None:
        renew_lease(thread, worker)
        failure = intake.fetch_into_mirror(thread, worker.source_client)
        if failure is None:
            thread.refresh_from_db()
            return
        tries += 1
        if failure.is_permanent or tries > worker.max_retries:
            raise ThreadFailed(
                ApiFailure(
                    failure.kind,
                    f"Fetching from the source failed: {failure.message}",
                    failure.http_status,
                    failure.request_id,
                )
            )
        worker.sleeper(failure.retry_after or worker.backoff(tries))


def ensure_conversation(thread, conversion, worker):
    """The live conversation, created empty (metadata only) if there is none yet."""
    live = thread.conversations.live().first()
    if live:
        return live, True
    created = call_api(
        thread,
        worker,
        lambda: worker.client.conversations.create(metadata=conversion.metadata),
    )
    with transaction.atomic():
        conversation = Conversation.objects.create(thread=thread, conversation_id=created.id)
        thread.items_committed = 0
        thread.save(update_fields=["items_committed"])
    return conversation, False


def record_committed(thread, conversation, committed, last_item_id):
    with transaction.atomic():
        conversation.items_committed = committed
        conversation.last_item_id = last_item_id
        conversation.save(update_fields=["items_committed", "last_item_id"])
        thread.items_committed = committed
        thread.save(update_fields=["items_committed"])


def reconcile(thread, conversation, items, worker):
    """Catch up with items the server has but we did not record (a write applied whose answer
    was lost). Anything that is not the next items we meant to send is a conflict."""
    found = list_items_after(
        thread, worker, conversation.conversation_id, conversation.last_item_id
    )
    start = conversation.items_committed
    expected = items[start : start + len(found)]
    if len(found) > len(items) - start or [item_fingerprint(i) for i in found] != [
        item_fingerprint(i) for i in expected
    ]:
        raise _failure(
            ErrorKind.CONFLICT,
            f"Conversation {conversation.conversation_id} holds {start + len(found)} items, "
            f"which do not match the {len(items)} this thread converts to; it was changed "
            "outside the console. Re-migrate to start a new conversation.",
        )
    if found:
        record_committed(thread, conversation, start + len(found), found[-1]["id"])
    return len(found)


def upload_items(thread, conversation, items, worker):
    while conversation.items_committed < len(items):
        start = conversation.items_committed
        batch = items[start : start + MAX_ITEMS_PER_CALL]

        def was_applied(start=start, batch=batch):
            reconcile(thread, conversation, items, worker)
            if conversation.items_committed >= start + len(batch):
                return APPLIED
            return None

        result = call_api(
            thread,
            worker,
            lambda batch=batch: openai_client.add_items(
                worker.client, conversation.conversation_id, batch
            ),
            reconcile=was_applied,
        )
        if result is not APPLIED:
            record_committed(thread, conversation, start + len(batch), result)


def verify(thread, conversation, items, worker):
    listed = list_items_after(thread, worker, conversation.conversation_id, None)
    if [item_fingerprint(i) for i in listed] != [item_fingerprint(i) for i in items]:
        raise _failure(
            ErrorKind.CONFLICT,
            f"Verification failed: conversation {conversation.conversation_id} holds "
            f"{len(listed)} items, expected {len(items)} in the thread's order.",
        )
    conversation.verified_at = timezone.now()
    conversation.verified_item_count = len(listed)
    conversation.save(update_fields=["verified_at", "verified_item_count"])


# --- one thread, start to end -------------------------------------------------------------------
def migrate_thread(thread_pk, worker):
    """Migrate one thread if this worker can take it; returns the outcome."""
    thread = take_lease(thread_pk, worker)
    if thread is None:
        return Attempt.Outcome.SKIPPED
    attempt = Attempt.objects.create(
        thread=thread,
        action=Attempt.Action.MIGRATE if thread.attempts == 1 else Attempt.Action.RETRY,
        outcome=Attempt.Outcome.STARTED,
        actor_label=f"worker {worker.name}",
        attempt_number=thread.attempts,
    )
    try:
        ensure_mirrored(thread, worker)
        conversion = preview_thread(thread)
        thread.items_total = len(conversion.items)
        thread.warning_count = len(conversion.warnings)
        thread.save(update_fields=["items_total", "warning_count"])
        conversation, resumed = ensure_conversation(thread, conversion, worker)
        attempt.conversation_id = conversation.conversation_id
        if resumed:
            reconcile(thread, conversation, conversion.items, worker)
        upload_items(thread, conversation, conversion.items, worker)
        verify(thread, conversation, conversion.items, worker)
    except LeaseLost as lost:
        _finish_attempt(attempt, Attempt.Outcome.FAILED, error_message=str(lost))
        return Attempt.Outcome.SKIPPED
    except ThreadFailed as failed:
        _fail(thread, attempt, failed.failure)
        return Attempt.Outcome.FAILED
    except Exception as error:
        log.exception("migrating %s failed", thread.thread_id)
        _fail(thread, attempt, ApiFailure(ErrorKind.INTERNAL, f"Console error: {error!r}"))
        return Attempt.Outcome.FAILED
    _succeed(thread, attempt)
    return Attempt.Outcome.SUCCEEDED


def _finish_attempt(attempt, outcome, **fields):
    for name, value in fields.items():
        setattr(attempt, name, value)
    attempt.outcome = outcome
    attempt.finished_at = timezone.now()
    attempt.save()


def _release(thread, status):
    thread.status = status
    thread.lease_owner = ""
    thread.lease_expires_at = None


def _succeed(thread, attempt):
    with transaction.atomic():
        _release(thread, ThreadStatus.SUCCEEDED)
        thread.clear_error()
        thread.save()
        _finish_attempt(
            attempt,
            Attempt.Outcome.SUCCEEDED,
            detail={"items": thread.items_total, "warnings": thread.warning_count},
        )


def _fail(thread, attempt, failure):
    with transaction.atomic():
        updated = Thread.objects.filter(pk=thread.pk, lease_owner=thread.lease_owner).update(
            status=ThreadStatus.FAILED,
            lease_owner="",
            lease_expires_at=None,
            error_kind=failure.kind,
            error_message=failure.message[:4000],
            error_http_status=failure.http_status,
            error_request_id=failure.request_id,
            updated_at=timezone.now(),
        )
        _finish_attempt(
            attempt,
            Attempt.Outcome.FAILED,
            error_kind=failure.kind,
            error_message=failure.message,
            http_status=failure.http_status,
            request_id=failure.request_id,
            detail={"lease_lost": not updated},
        )


# --- many threads at once -----------------------------------------------------------------------
def migrate_many(thread_pks, *, concurrency=None, worker_factory=Worker, on_done=None):
    """Migrate threads with `concurrency` in flight: the work is waiting on the network, so one
    process carries many threads. Returns {outcome: count}."""
    concurrency = concurrency or settings.MIGRATION_THREADS_PER_WORKER
    client = openai_client.destination_client()
    outcomes = {}
    lock = threading.Lock()

    def run(pk):
        try:
            outcome = migrate_thread(pk, worker_factory(client=client))
        finally:
            connections.close_all()  # each pool thread has its own connection
        with lock:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if on_done:
                on_done(pk, outcome)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="migrate") as pool:
        list(pool.map(run, thread_pks))
    return outcomes

"""The per-thread migration: lease → fetch if needed → convert → create → add batches → verify.

DESIGN.md "Writing without duplicates or orphans" is the contract:
- the conversation is created empty (metadata only), and its id is stored in the transaction
  that moves the thread on, so an ambiguous create leaves at most an empty conversation;
- items go in batches of ≤20 (and a bounded size); after each, the committed count and the last
  server item id are stored before anything else happens;
- after an ambiguous write (dropped connection, timeout, 5xx) the worker backs off, then lists
  the items after the last known one and compares them with what it meant to send before
  sending again;
- every state change goes through `states`, fenced on this worker's lease; before each request
  the worker makes sure its lease outlives the request's timeout plus any wait ahead of it, and
  a worker that lost its lease stops without writing anything more.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections

from migrations_app import intake, openai_client, ratelimit, states
from migrations_app.conversion import MAX_ITEMS_PER_CALL, Options, batches, match_listing
from migrations_app.models import Attempt, Conversation, ErrorKind, Thread, ThreadStatus
from migrations_app.openai_client import ApiFailure
from migrations_app.preview import conversion_options, preview_thread
from migrations_app.states import Lease, LeaseLost

log = logging.getLogger(__name__)
ITEM_INCLUDE = ["message.input_image.image_url"]
MAX_RATE_LIMITED_RETRIES = 50
# Added to the API timeout when a lease must outlive a request: the request's own overheads.
REQUEST_MARGIN_SECONDS = 5.0
APPLIED = object()  # reconciliation found the batch on the server


class ThreadFailed(Exception):
    def __init__(self, failure: ApiFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class TooLarge(ThreadFailed):
    """The API refused a request body as too large (HTTP 413): a batch can be split."""


def _failure(kind: str, message: str) -> ThreadFailed:
    return ThreadFailed(ApiFailure(kind=kind, message=message))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


@dataclass
class Worker:
    """What a migration run needs from the outside world, injectable for tests."""

    client: Any = None
    source_client: Any = None
    limiter: Any = None
    sleeper: Callable[[float], Any] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    lease_seconds: float = 0
    max_retries: int = -1  # -1: MIGRATION_MAX_RETRIES
    name: str = field(default_factory=worker_name)
    clock: Callable[[], float] = time.monotonic
    # How long a lease must outlive the start of a request: the timeout plus a margin.
    request_seconds: float = 0

    def __post_init__(self) -> None:
        # The clients and the budget are the process's own, shared by its threads: a client
        # costs an SSL context to build, and the budget's slots are taken several at a time.
        self.client = self.client or openai_client.destination_client()
        self.source_client = self.source_client or openai_client.source_client()
        self.limiter = self.limiter or ratelimit.shared(ratelimit.DESTINATION)
        self.lease_seconds = self.lease_seconds or settings.MIGRATION_LEASE_SECONDS
        timeout = settings.API_TIMEOUT_SECONDS
        self.request_seconds = self.request_seconds or timeout + min(
            REQUEST_MARGIN_SECONDS, timeout / 2
        )
        if self.max_retries < 0:
            self.max_retries = settings.MIGRATION_MAX_RETRIES

    def backoff(self, attempt: int) -> float:
        """Exponential with full jitter: 0.5 s, 1 s, 2 s … capped at 30 s."""
        return self.rng.uniform(0, min(30.0, 0.5 * 2**attempt))

    def lease_owner(self) -> str:
        """A name for one lease: the worker, plus a token no other lease ever had."""
        return f"{self.name}#{secrets.token_hex(4)}"


@dataclass
class Run:
    """One worker's attempt at one thread, while it holds the lease."""

    thread: Thread
    lease: Lease
    worker: Worker
    attempt: Attempt
    committed: int = 0
    last_item_id: str = ""
    ambiguous_creates: int = 0
    taken_back: int = 0  # copies of our items deleted (written by a worker that lost its lease)

    def hold(self, wait: float = 0.0) -> None:
        states.hold(self.lease, wait + self.worker.request_seconds)

    def record(self, committed: int, last_item_id: str) -> None:
        states.record_progress(self.lease, committed, last_item_id)
        self.committed, self.last_item_id = committed, last_item_id


# --- calls with retries -------------------------------------------------------------------------
def call_api(
    run: Run,
    request: Callable[[], Any],
    *,
    reconcile: Callable[[], Any] | None = None,
    source: bool = False,
) -> Any:
    """Run one API request with our own retries (the SDK's are off for writes): the one retry
    policy of the engine, for the destination and (`source`) the source alike.

    Before sending, the lease must outlive the wait for a slot in the budget plus the request's
    timeout, and still does after the wait (a worker frozen meanwhile stops here). Permanent
    errors fail the thread at once; rate limits push the shared budget back and retry; transient
    errors back off, then (for a write) ask `reconcile` whether the write was applied after all,
    and return its answer instead of writing again. Source requests are paced, and their 429s
    passed on to the source's budget, by the source client itself, read by read.
    """
    transient, limited = 0, 0
    while True:
        wait = 0.0 if source else run.worker.limiter.reserve()
        run.hold(wait)
        if wait > 0:
            run.worker.sleeper(wait)
        try:
            with openai_client.guarded_writes(run.hold):
                return request()
        except Exception as error:
            if isinstance(error.__cause__, LeaseLost):  # stopped by the guard, before sending
                raise error.__cause__ from None
            failure = openai_client.classify(error)
        if failure.kind == ErrorKind.TOO_LARGE:
            raise TooLarge(failure)
        if failure.is_permanent:
            raise ThreadFailed(failure)
        if failure.kind == ErrorKind.RATE_LIMITED:
            limited += 1
            if limited > MAX_RATE_LIMITED_RETRIES:
                raise ThreadFailed(failure)
            if source:  # the source client slowed the source's budget as the 429 came in
                run.worker.sleeper(failure.retry_after or run.worker.backoff(limited))
            else:
                run.worker.limiter.slow_down(failure.retry_after or run.worker.backoff(limited))
            continue
        transient += 1
        if transient > run.worker.max_retries:
            raise ThreadFailed(failure)
        # Back off before looking: a write still being applied would otherwise be missed.
        run.worker.sleeper(run.worker.backoff(transient))
        if reconcile is not None:
            applied = reconcile()
            if applied is not None:
                return applied


def list_items_after(
    run: Run,
    conversation_id: str,
    after: str | None,
    send: Callable[[Callable[[], Any]], Any] | None = None,
) -> list[dict[str, Any]]:
    """Every item after `after` (or from the start), oldest first; each page is sent through
    `send` (by default `call_api`: paced, under the lease, retried)."""
    send = send or (lambda request: call_api(run, request))
    client = run.worker.client
    return list(
        openai_client.paginate(
            lambda cursor: send(
                lambda: openai_client.items_page(client, conversation_id, cursor, ITEM_INCLUDE)
            ),
            after,
        )
    )


# --- the steps ----------------------------------------------------------------------------------
def ensure_mirrored(run: Run) -> None:
    """Fetch the thread first if the mirror does not hold it, through the source client every
    fetch uses (paced by the source's budget; before each read the lease must outlive its wait
    and timeout). Reads are safe to repeat: failures are retried as any request is (`call_api`);
    the mirror is written only while this worker holds the lease."""
    if run.thread.data is not None:
        return

    def fetch() -> dict[str, Any]:
        with openai_client.guarded_reads(run.hold, run.worker.sleeper):
            return openai_client.fetch_thread_bundle(run.worker.source_client, run.thread.thread_id)

    try:
        bundle = call_api(run, fetch, source=True)
    except ThreadFailed as failed:
        message = f"Fetching from the source failed: {failed.failure.message}"
        raise ThreadFailed(dataclasses.replace(failed.failure, message=message)) from None
    store_mirror(run, bundle)


def store_mirror(run: Run, bundle: dict[str, Any]) -> None:
    """Write the fetched thread into the mirror, only while this worker's lease is still on the
    thread: intake checks the bundle first (outside any transaction), then locks the row with
    the lease as the fence and writes, holding the row no longer than the write does (a worker
    can freeze inside a transaction, and the sweeper passes over rows that are held)."""
    fetched = intake.store_fetched(run.thread, bundle, lease_owner=run.lease.owner)
    if fetched.failure is not None:
        raise ThreadFailed(fetched.failure)
    if fetched.skipped:
        raise LeaseLost(f"thread {run.thread.pk}: the lease was taken over during the fetch")
    run.thread.refresh_from_db()


def conversion_for(thread: Thread) -> tuple[Any, Options]:
    """The conversion to upload: with the options the live conversation was started with (a
    resumed upload must build the same items), else with the current settings."""
    stored = None
    if thread.conversation_id:  # a live conversation is always named on its thread
        live = Conversation.objects.live().filter(thread=thread).values_list("options", flat=True)
        stored = live.first()
    options = Options(**stored) if stored else conversion_options()
    return preview_thread(thread, options), options


def ensure_conversation(run: Run, conversion: Any, options: Options) -> bool:
    """Create the conversation, empty, unless the thread has a live one; True if it had."""
    if run.thread.conversation_id:
        return True

    def create() -> str:
        try:
            return openai_client.create_conversation(run.worker.client, conversion.metadata)
        except Exception as error:
            if openai_client.is_ambiguous(error):
                run.ambiguous_creates += 1
            raise

    conversation_id = call_api(run, create)
    try:
        states.start_conversation(
            run.lease,
            conversation_id,
            dataclasses.asdict(options),
            items_total=len(conversion.items),
            warning_count=len(conversion.warnings),
        )
    except LeaseLost:
        taken_back = withdraw(
            run, lambda: openai_client.delete_conversation(run.worker.client, conversation_id)
        )
        raise LeaseLost(
            f"the lease was taken over after conversation {conversation_id} was created; "
            + ("it was deleted (it was empty)" if taken_back else "it is left empty")
        ) from None
    run.thread.conversation_id = conversation_id
    run.committed, run.last_item_id = 0, ""
    return False


def reconcile(run: Run, items: list[dict[str, Any]]) -> int:
    """Catch up with items the server has but we did not record (a write applied whose answer
    was lost), taking back copies a worker wrote after losing its lease. Anything else is a
    conflict: the conversation was changed outside the console."""
    found = list_items_after(run, run.thread.conversation_id, run.last_item_id or None)
    matched = match_listing(found, items, run.committed)
    if matched is None:
        raise _conflict(run, run.committed + len(found), len(items))
    adopted, copies = matched
    take_back(run, [found[index]["id"] for index in copies])
    if adopted:
        last = [item for index, item in enumerate(found) if index not in copies][adopted - 1]
        run.record(run.committed + adopted, last["id"])
    return adopted


def _conflict(run: Run, held: int, expected: int) -> ThreadFailed:
    return _failure(
        ErrorKind.CONFLICT,
        f"Conversation {run.thread.conversation_id} holds {held} items, which do not match the "
        f"{expected} this thread converts to: it was changed outside the console. Re-migrate "
        "to start a new conversation.",
    )


def take_back(run: Run, item_ids: list[str]) -> None:
    """Delete items that are copies of ours (written by a worker that had lost its lease)."""
    for item_id in item_ids:
        try:
            call_api(
                run,
                partial(
                    openai_client.delete_item,
                    run.worker.client,
                    run.thread.conversation_id,
                    item_id,
                ),
            )
        except ThreadFailed as failed:
            if failed.failure.kind != ErrorKind.NOT_FOUND:  # already gone is what we wanted
                raise
        run.taken_back += 1


def upload_items(run: Run, items: list[dict[str, Any]]) -> None:
    """Batches from the last committed item on. A batch the API refuses as too large is halved;
    a single item it refuses fails the thread with that reason."""
    size = MAX_ITEMS_PER_CALL
    while run.committed < len(items):
        start = run.committed
        batch = batches(items[start : start + size], size)[0]

        def was_applied(start: int = start, batch: list[dict[str, Any]] = batch) -> Any:
            reconcile(run, items)
            return APPLIED if run.committed >= start + len(batch) else None

        try:
            result = call_api(
                run,
                partial(
                    openai_client.add_items, run.worker.client, run.thread.conversation_id, batch
                ),
                reconcile=was_applied,
            )
        except TooLarge as refused:
            if len(batch) > 1:
                size = len(batch) // 2
                continue
            raise _failure(
                ErrorKind.TOO_LARGE,
                f"Item {start + 1} of {len(items)} is too large for the API, even alone: "
                f"{refused.failure.message}",
            ) from None
        if result is not APPLIED:
            record_written(run, start + len(batch), result)
        size = min(MAX_ITEMS_PER_CALL, size * 2)


def record_written(run: Run, committed: int, item_ids: list[str]) -> None:
    """Record a write. If the lease was lost meanwhile (the worker froze while its request was
    under way and another worker took over), the write may have landed behind the new owner's
    back: a running owner takes such copies back when it reconciles or verifies; if the owner
    already finished, this worker takes back its own items that came after the verified ones."""
    try:
        run.record(committed, item_ids[-1])
    except LeaseLost as lost:
        raise LeaseLost(f"{lost}; {_take_back_late_write(run, item_ids)}") from None


def _take_back_late_write(run: Run, item_ids: list[str]) -> str:
    now = Thread.objects.filter(pk=run.thread.pk).values(
        "status", "conversation_id", "last_item_id"
    )
    thread = now.first()
    if (
        thread is None
        or thread["status"] != ThreadStatus.SUCCEEDED
        or thread["conversation_id"] != run.thread.conversation_id
    ):
        return f"its last write ({len(item_ids)} items) is left to the thread's next owner"
    verified_last = thread["last_item_id"] or None
    late: list[str] = []

    def list_late() -> None:
        listed = list_items_after(run, run.thread.conversation_id, verified_last, send=_send_once)
        late.extend(item["id"] for item in listed if item["id"] in item_ids)

    withdraw(run, list_late)
    kept = [
        item_id
        for item_id in late
        if not withdraw(
            run,
            partial(
                openai_client.delete_item, run.worker.client, run.thread.conversation_id, item_id
            ),
        )
    ]
    if kept:
        log.error("%s: could not delete late items %s", run.thread.thread_id, kept)
        return f"wrote {len(late)} items after the thread was verified; could not delete {kept}"
    return f"wrote {len(late)} items after the thread was verified and deleted them"


def _send_once(request: Callable[[], Any]) -> Any:
    return request()


def withdraw(run: Run, request: Callable[[], Any]) -> bool:
    """Undo this worker's own late write, without a lease (it has none any more); transient
    errors are retried. True if it was done."""
    for attempt in range(run.worker.max_retries + 1):
        try:
            request()
            return True
        except Exception as error:
            failure = openai_client.classify(error)
            if failure.is_permanent:
                return failure.kind == ErrorKind.NOT_FOUND
        run.worker.sleeper(run.worker.backoff(attempt + 1))
    return False


def verify(run: Run, items: list[dict[str, Any]]) -> int:
    """List the whole conversation: it must hold exactly the thread's items, in order (copies
    written behind our back are taken back first)."""
    for _ in range(3):
        listed = list_items_after(run, run.thread.conversation_id, None)
        matched = match_listing(listed, items)
        if matched is None or matched[0] != len(items):
            raise _failure(
                ErrorKind.CONFLICT,
                f"Verification failed: conversation {run.thread.conversation_id} holds "
                f"{len(listed)} items, expected {len(items)} in the thread's order. Re-migrate "
                "to start a new conversation.",
            )
        if not matched[1]:
            return len(listed)
        take_back(run, [listed[index]["id"] for index in matched[1]])
    raise _conflict(run, len(listed), len(items))


# --- one thread, start to end -------------------------------------------------------------------
def migrate_thread(
    thread_pk: int, worker: Worker, on_taken: Callable[[], Any] | None = None
) -> str:
    """Migrate one thread if this worker can take it; returns the outcome. `on_taken` is called
    once the thread is taken (or found not to be takeable)."""
    lease = states.take(thread_pk, worker.lease_owner(), worker.lease_seconds, worker.clock)
    if on_taken:
        on_taken()
    if lease is None:
        return Attempt.Outcome.SKIPPED
    thread = Thread.objects.get(pk=thread_pk)
    action = thread.requested_action or Attempt.Action.MIGRATE
    attempt = states.open_attempt(lease, action, f"worker {worker.name}", thread.attempts)
    run = Run(thread, lease, worker, attempt, thread.items_committed, thread.last_item_id)
    try:
        count = _migrate(run)
        states.succeed(lease, attempt.pk, count, run.last_item_id, **_attempt_fields(run, count))
    except LeaseLost as lost:
        states.abandon_attempt(attempt.pk, f"Stopped: {lost}")
        return Attempt.Outcome.ABANDONED
    except ThreadFailed as failed:
        return _fail(run, failed.failure)
    except Exception as error:
        log.exception("migrating %s failed", thread.thread_id)
        return _fail(run, ApiFailure(ErrorKind.INTERNAL, f"Console error: {error!r}"))
    return Attempt.Outcome.SUCCEEDED


def _migrate(run: Run) -> int:
    ensure_mirrored(run)
    conversion, options = conversion_for(run.thread)
    if run.thread.conversation_id:  # resumed: the totals of a new conversation go with it
        states.set_totals(run.lease, len(conversion.items), len(conversion.warnings))
    if ensure_conversation(run, conversion, options):
        reconcile(run, conversion.items)
    upload_items(run, conversion.items)
    return verify(run, conversion.items)


def _attempt_fields(run: Run, items: int | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"items_committed": run.committed}
    if items is not None:
        detail["items"] = items
    if run.ambiguous_creates:
        detail["possible_empty_conversations"] = run.ambiguous_creates
    if run.taken_back:
        detail["copies_taken_back"] = run.taken_back
    return {"conversation_id": run.thread.conversation_id, "detail": detail}


def _fail(run: Run, failure: ApiFailure) -> str:
    if run.ambiguous_creates:
        failure = dataclasses.replace(
            failure,
            message=f"{failure.message} ({run.ambiguous_creates} conversation create(s) got no "
            "answer: an empty conversation may exist that the console cannot name.)",
        )
    try:
        states.fail(run.lease, run.attempt.pk, failure, **_attempt_fields(run))
    except LeaseLost as lost:
        states.abandon_attempt(run.attempt.pk, f"Stopped: {lost}")
        return Attempt.Outcome.ABANDONED
    return Attempt.Outcome.FAILED


# --- many threads at once -----------------------------------------------------------------------
def migrate_many(
    thread_pks: Iterable[int],
    *,
    concurrency: int | None = None,
    worker_factory: Callable[..., Worker] = Worker,
    on_done: Callable[[int, str], Any] | None = None,
) -> dict[str, int]:
    """Migrate threads with `concurrency` in flight, and wait for them all: the work is waiting
    on the network, so one process carries many threads. Returns {outcome: count}."""
    concurrency = concurrency or settings.MIGRATION_THREADS_PER_WORKER
    client = openai_client.destination_client()
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def run(pk: int) -> None:
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


class _ProcessPool:
    """The worker process's own threads, kept from task to task with their database
    connections: a task hands its threads over and returns once each has been taken, so the
    process keeps `size` threads in flight across tasks instead of draining at each task's end
    (its slowest thread) and connecting again for each thread."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pid = os.getpid()
        self.slots = threading.BoundedSemaphore(size)
        self.executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="migrate")

    def run(self, pk: int, taken: threading.Event) -> None:
        try:
            close_old_connections()  # a connection that failed or outlived CONN_MAX_AGE
            migrate_thread(pk, Worker(), on_taken=taken.set)
        except Exception:
            log.exception("migrating thread %s stopped", pk)
        finally:
            taken.set()
            self.slots.release()

    def close(self) -> None:
        """Finish the work in flight, close each thread's database connection and stop."""
        barrier = threading.Barrier(self.size)

        def close_connections() -> None:
            barrier.wait(timeout=60)  # one on each thread of the pool
            connections.close_all()

        for _ in range(self.size):
            self.executor.submit(close_connections)
        self.executor.shutdown(wait=True)


_pool: _ProcessPool | None = None
_pool_lock = threading.Lock()


def close_pool() -> None:
    """Stop this process's pool, if it has one (tests; a stopping worker just exits)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None and pool.pid == os.getpid():
        pool.close()


def _process_pool() -> _ProcessPool:
    global _pool
    size = settings.MIGRATION_THREADS_PER_WORKER
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid() or _pool.size != size:
            _pool = _ProcessPool(size)
        return _pool


def hand_over(thread_pks: Iterable[int]) -> dict[str, int]:
    """A worker task: run threads on this process's pool, at most MIGRATION_THREADS_PER_WORKER
    at once; returns when every one has been taken (or skipped), so none is left queued without
    its task. They finish after the task returns; a stopping process waits for them."""
    pool = _process_pool()
    events = []
    for pk in thread_pks:
        pool.slots.acquire()
        taken = threading.Event()
        events.append(taken)
        pool.executor.submit(pool.run, pk, taken)
    for taken in events:
        taken.wait()
    return {"handed over": len(events)}

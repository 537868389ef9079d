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
import multiprocessing.util
import os
import queue
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections
from django.db.models.functions import Now
from django.utils import timezone

from migrations_app import intake, openai_client, ratelimit, states
from migrations_app.alignment import Aligner, Alignment, Claim
from migrations_app.conversion import (
    MAX_ITEMS_PER_CALL,
    Options,
    batches,
    conversation_metadata,
)
from migrations_app.models import (
    Attempt,
    Conversation,
    ErrorKind,
    Thread,
    ThreadStatus,
    WriteClaim,
)
from migrations_app.openai_client import ApiFailure
from migrations_app.preview import conversion_options, preview_thread
from migrations_app.states import Lease, LeaseLost

log = logging.getLogger(__name__)
ITEM_INCLUDE = ["message.input_image.image_url"]
MAX_RATE_LIMITED_RETRIES = 50
# Added to the API timeout when a lease must outlive a request: the request's own overheads.
REQUEST_MARGIN_SECONDS = 5.0
APPLIED = object()  # reconciliation found the batch on the server
# The least wait before looking whether a write whose answer was lost was applied: a write still
# being applied when the worker looks would be missed, and sent again.
LOOK_AFTER_SECONDS = 1.0
# A long wait is held a slice at a time (see wait_holding).
WAIT_SLICE_SECONDS = 30.0
# Rounds of verification before giving up on a conversation that keeps changing.
VERIFY_ROUNDS = 5
DESTINATION_NOT_FOUND = (
    "The destination does not know this conversation (deleted, or OPENAI_API_KEY names another "
    "project)"
)


class ThreadFailed(Exception):
    def __init__(self, failure: ApiFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class HandingBack(Exception):
    """This worker process is stopping: the thread goes back to the queue, for another worker
    to resume from its last recorded item."""


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

    def look_delay(self, attempt: int) -> float:
        """The wait before looking whether an ambiguous write was applied: never near zero."""
        return LOOK_AFTER_SECONDS + self.backoff(attempt)

    def lease_owner(self) -> str:
        """A name for one lease: the worker, plus a token no other lease ever had."""
        return f"{self.name}#{secrets.token_hex(4)}"


@dataclass
class EarlyCreate:
    """The conversation a fetch creates as soon as the thread object is back, while the rest of
    the thread is still being read (one round less per thread). Empty, and not yet the thread's:
    it is recorded once the mirror is stored (`ensure_conversation`), else deleted."""

    metadata: dict[str, str]
    conversation_id: str = ""
    error: Exception | None = None


@dataclass
class Run:
    """One worker's attempt at one thread, while it holds the lease."""

    thread: Thread
    lease: Lease
    worker: Worker
    attempt: Attempt
    committed: int = 0
    last_item_id: str = ""
    # The thread's claim count as this worker knows it: its `succeed` is fenced on it.
    claim_seq: int = 0
    ambiguous_creates: int = 0
    taken_back: int = 0  # provable copies of our items deleted
    # Ids this worker wrote, by item index: kept over copies of the same items.
    anchors: dict[str, int] = field(default_factory=dict)
    # Writes this worker announced as possibly landed unrecorded (their claim reasons).
    announced: list[str] = field(default_factory=list)
    claims: tuple[int, list[Claim]] | None = None  # (claim_seq, claims) last read
    replaced: str = ""  # the conversation a re-migrate replaced as it started
    early: EarlyCreate | None = None  # a conversation created while the thread was fetched
    synced: dict[str, int] | None = None  # what a sync added: new messages, items

    def hold(self, wait: float = 0.0) -> None:
        states.hold(self.lease, wait + self.worker.request_seconds)

    def before_send(self, slot: float | None, method: str) -> None:
        """The send guard: a request leaves in its slot of the budget, a write only under a
        lease that outlives it (DESIGN.md, "The lease")."""
        late = self.worker.limiter.clock() - slot if slot is not None else 0.0
        if late > ratelimit.LATE:
            raise openai_client.SlotMissed(f"missed its slot by {late:.2f} s")
        if method in openai_client.WRITE_METHODS:
            self.hold()

    def record(self, committed: int, last_item_id: str) -> None:
        states.record_progress(self.lease, committed, last_item_id)
        self.committed, self.last_item_id = committed, last_item_id


# --- calls with retries -------------------------------------------------------------------------
def wait_holding(run: Run, seconds: float) -> None:
    """Wait `seconds` before a request, the lease outliving the wait and the request. A long
    wait (a Retry-After, a throttled budget) is held a slice at a time: a worker that dies while
    waiting pins its thread for a lease at most, not for the whole wait."""
    while seconds > WAIT_SLICE_SECONDS:
        run.hold(WAIT_SLICE_SECONDS)
        run.worker.sleeper(WAIT_SLICE_SECONDS)
        seconds -= WAIT_SLICE_SECONDS
    run.hold(seconds)
    if seconds > 0:
        run.worker.sleeper(seconds)


def call_api(
    run: Run,
    request: Callable[[], Any],
    *,
    reconcile: Callable[[], Any] | None = None,
    source: bool = False,
    claim: tuple[int, int] | None = None,
) -> Any:
    """Run one API request with our own retries (the SDK's are off for writes): the one retry
    policy of the engine, for the destination and (`source`) the source alike.

    Before sending, the lease must outlive the wait for a slot in the budget plus the request's
    timeout, and still does after the wait (a worker frozen meanwhile stops here); a slot the
    worker missed while frozen is given up for a new one rather than spent late. Permanent
    errors fail the thread at once; rate limits push the shared budget back and retry; transient
    errors back off, then (for a write) ask `reconcile` whether the write was applied after all,
    and return its answer instead of writing again. A write of items (`claim`: the index of its
    first item and how many) whose answer is lost is recorded as a claim first (DESIGN.md,
    "Provenance"). Source requests are paced, and their 429s passed on to the source's budget,
    by the source client itself, read by read.
    """
    transient, limited = 0, 0
    limiter = run.worker.limiter
    while True:
        if STOPPING.is_set():
            raise HandingBack("its worker was stopping")
        wait = 0.0 if source else limiter.reserve()
        slot = limiter.clock() + wait
        wait_holding(run, wait)
        try:
            with openai_client.guarded_sends(partial(run.before_send, None if source else slot)):
                return request()
        except Exception as error:
            stopped = _stopped_before_sending(error)
            if isinstance(stopped, openai_client.SlotMissed):  # frozen past its slot: unsent
                continue
            if stopped is not None:
                raise stopped from None
            failure = _classified(error, source)
            ambiguous = openai_client.is_ambiguous(error)
        if claim is not None and ambiguous:
            announce_ambiguous(run, *claim)
        if failure.kind == ErrorKind.TOO_LARGE:
            raise TooLarge(failure)
        if failure.is_permanent:
            raise ThreadFailed(failure)
        if failure.kind == ErrorKind.RATE_LIMITED:
            limited += 1
            if limited > MAX_RATE_LIMITED_RETRIES:
                raise ThreadFailed(failure)
            if source:  # the source client slowed the source's budget as the 429 came in
                wait_holding(run, failure.retry_after or run.worker.backoff(limited))
            else:
                limiter.slow_down(failure.retry_after or run.worker.backoff(limited))
            continue
        transient += 1
        if transient > run.worker.max_retries:
            raise ThreadFailed(failure)
        if reconcile is None:
            wait_holding(run, run.worker.backoff(transient))
            continue
        # Look only after a real wait: a write still being applied would otherwise be missed.
        wait_holding(run, run.worker.look_delay(transient))
        applied = reconcile()
        if applied is not None:
            return applied


def _stopped_before_sending(error: Exception) -> Exception | None:
    """What stopped a request in its send guard, if anything did: a lost lease, a missed slot,
    or the database failing under the lease check (a ThreadFailed of its own kind)."""
    for reason in (error, error.__cause__):
        if isinstance(reason, LeaseLost | openai_client.SlotMissed):
            return reason
        if isinstance(reason, DatabaseError):
            return _failure(ErrorKind.DATABASE, f"The console's database failed: {reason}")
    return None


def _classified(error: Exception, source: bool) -> ApiFailure:
    failure = openai_client.classify(error)
    if source or failure.kind != ErrorKind.NOT_FOUND:
        return failure
    return dataclasses.replace(
        failure,
        kind=ErrorKind.DESTINATION_NOT_FOUND,
        message=f"{DESTINATION_NOT_FOUND} (HTTP {failure.http_status}): "
        f"{failure.message.split(': ', 1)[-1]}",
    )


def item_pages(
    run: Run, conversation_id: str, after: str | None, ahead: Sequence[str] = ()
) -> Iterator[list[dict[str, Any]]]:
    """The conversation's items after `after` (or from the start), oldest first, a page at a
    time, each page paced, under the lease and retried (`call_api`).

    `ahead`: the ids that should end the first pages (items this worker wrote). Those pages are
    read at once, and each is used only if the page before it ended at its cursor: the listing
    is the same as one read page after page, in one round instead of one per page."""

    def page_after(cursor: str | None) -> Any:
        read = partial(openai_client.items_page, run.worker.client, conversation_id, cursor,
                       ITEM_INCLUDE)  # fmt: skip
        return call_api(run, read)

    def page_ahead(cursor: str) -> Any:
        try:
            return page_after(cursor)
        except ThreadFailed as failed:  # its cursor is gone: read in turn, it is named there
            if failed.failure.http_status in (400, 404):
                return None
            raise

    read_ahead = openai_client.concurrently(
        [partial(page_after, after), *(partial(page_ahead, cursor) for cursor in ahead)]
    )
    for page, cursor in zip(read_ahead, [*ahead, None], strict=True):
        if page is None:
            break
        if page["data"]:
            yield page["data"]
        if not page.get("has_more") or not page["data"]:
            return
        after = page["data"][-1]["id"]
        if after != cursor:  # the chain broke here: the rest one page after another
            break
    while True:
        page = page_after(after)
        if page["data"]:
            yield page["data"]
        if not page.get("has_more") or not page["data"]:
            return
        after = page["data"][-1]["id"]


# --- the steps ----------------------------------------------------------------------------------
def ensure_mirrored(run: Run) -> None:
    """Fetch the thread first if the mirror does not hold it, through the source client every
    fetch uses (paced by the source's budget; before each read the lease must outlive its wait
    and timeout). Reads are safe to repeat: failures are retried as any request is (`call_api`);
    the mirror is written only while this worker holds the lease."""
    if run.thread.data is not None:
        return
    early = not run.thread.conversation_id and (
        run.thread.requested_action != Attempt.Action.REMIGRATE
    )

    def fetch() -> dict[str, Any]:
        with openai_client.guarded_reads(run.hold, run.worker.sleeper):
            return openai_client.fetch_thread_bundle(
                run.worker.source_client,
                run.thread.thread_id,
                on_thread=partial(create_early, run) if early else None,
            )

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


def create_conversation(run: Run, metadata: dict[str, str]) -> str:
    """Create an empty conversation (retried as any write; a create whose answer was lost may
    leave an empty one behind, counted)."""

    def create() -> str:
        try:
            return openai_client.create_conversation(run.worker.client, metadata)
        except Exception as error:
            if openai_client.is_ambiguous(error):
                run.ambiguous_creates += 1
            raise

    return str(call_api(run, create))


def create_early(run: Run, thread: dict[str, Any]) -> None:
    """Create the conversation while the rest of the thread is read (`EarlyCreate`); once per
    attempt, however often the fetch is retried. Keeps its outcome: it runs inside the fetch."""
    if run.early is not None:
        return
    run.early = EarlyCreate(conversation_metadata(thread, conversion_options())[0])
    try:
        run.early.conversation_id = create_conversation(run, run.early.metadata)
    except Exception as error:
        run.early.error = error


def take_early(run: Run, metadata: dict[str, str]) -> str:
    """The conversation created early, if it was made with this metadata; "" if there is none.
    A create that failed fails the thread as it would have later."""
    early, run.early = run.early, None
    if early is None:
        return ""
    if early.error is not None:
        raise early.error
    if early.metadata != metadata:  # the stored thread converts otherwise: not ours to use
        withdraw_early(run, early)
        return ""
    return early.conversation_id


def delete_empty(run: Run, conversation_id: str) -> bool:
    """Delete a conversation this worker created and never wrote to (`withdraw`: no lease
    needed); True if it is gone."""
    return withdraw(
        run, partial(openai_client.delete_conversation, run.worker.client, conversation_id)
    )


def withdraw_early(run: Run, early: EarlyCreate | None) -> None:
    """Delete a conversation created early and not taken up (the attempt stopped first): it is
    empty, and no one but this worker knows of it. Whatever stopped the attempt is what gets
    recorded: a delete that fails leaves the empty conversation, as a killed worker would."""
    if early is None or not early.conversation_id:
        return
    try:
        delete_empty(run, early.conversation_id)
    except Exception:
        log.exception("deleting the unused conversation %s failed", early.conversation_id)


def ensure_conversation(run: Run, conversion: Any, options: Options) -> bool:
    """Create the conversation, empty, unless the thread has a live one; True if it had."""
    if run.thread.conversation_id:
        return True
    conversation_id = take_early(run, conversion.metadata) or create_conversation(
        run, conversion.metadata
    )
    try:
        states.start_conversation(
            run.lease,
            conversation_id,
            dataclasses.asdict(options),
            items_total=len(conversion.items),
            warning_count=len(conversion.warnings),
        )
    except LeaseLost:
        taken_back = delete_empty(run, conversation_id)
        raise LeaseLost(
            f"the lease was taken over after conversation {conversation_id} was created; "
            + ("it was deleted (it was empty)" if taken_back else "it is left empty")
        ) from None
    run.thread.conversation_id = conversation_id
    run.committed, run.last_item_id = 0, ""
    return False


# --- provenance: what the console can prove it wrote --------------------------------------------
def announce(
    run: Run, start: int, count: int, reason: str, item_ids: list[str] | None = None
) -> bool:
    """Record a write of items[start:start + count] after the last recorded item that may have
    landed unrecorded (DESIGN.md, "Provenance"). True if this worker still holds the thread;
    else the write is the thread's next owner's to take back, or this worker's own to settle
    (`settle_late_writes`) before it stops."""
    now = states.record_claim(
        run.thread.pk,
        run.thread.conversation_id,
        start=start,
        count=count,
        after_item_id=run.last_item_id,
        owner=run.lease.owner,
        reason=reason,
        item_ids=item_ids,
    )
    run.announced.append(reason)
    run.claim_seq += 1
    return (
        now is not None
        and now.status == ThreadStatus.RUNNING
        and (now.lease_owner == run.lease.owner)
    )


def announce_ambiguous(run: Run, start: int, count: int) -> None:
    """A write whose answer was lost: claimed before anything else; raises LeaseLost if the
    thread is no longer this worker's."""
    if not announce(run, start, count, WriteClaim.Reason.AMBIGUOUS):
        raise LeaseLost("the lease was taken over after a write whose answer was lost")


def _claims(run: Run) -> list[Claim]:
    """The claims on the live conversation (none to read while the thread has none)."""
    if not run.claim_seq:
        return []
    if run.claims is None or run.claims[0] != run.claim_seq:
        rows = states.claims_on(run.thread.pk, run.thread.conversation_id)
        claims = [Claim(row.start, row.count, row.after_item_id,
                        frozenset(row.item_ids) if row.item_ids is not None else None)
                  for row in rows]  # fmt: skip
        run.claims = (run.claim_seq, claims)
    return run.claims[1]


class CursorGone(Exception):
    """The item a listing was to start after no longer exists."""


def align(run: Run, items: list[dict[str, Any]], *, after: str | None, start: int,
          anchors: dict[str, int], ahead: Sequence[str] = ()) -> Alignment:  # fmt: skip
    """Line the conversation (after `after`, or whole) up with the thread's items, a page at a
    time (`ahead`: see item_pages). Raises CursorGone if `after` no longer exists."""
    aligner = Aligner(items, start=start, anchors=anchors, claims=_claims(run))
    pages = item_pages(run, run.thread.conversation_id, after, ahead)
    try:
        first = next(pages, [])
    except ThreadFailed as failed:
        if after and failed.failure.http_status in (400, 404):
            raise CursorGone(failed.failure.message) from None
        raise
    aligner.feed(first)
    for page in pages:
        aligner.feed(page)
    return aligner.result()


def _conflict(run: Run, alignment: Alignment, expected: int, what: str) -> ThreadFailed:
    details = []
    if alignment.foreign:
        details.append(f"{len(alignment.foreign)} item(s) the console did not write")
    if alignment.missing:
        details.append(f"{len(alignment.missing)} of its recorded item(s) missing")
    return _failure(
        ErrorKind.CONFLICT,
        f"{what}: conversation {run.thread.conversation_id} holds "
        f"{'; '.join(details) or f'{alignment.matched} of the {expected} items'} "
        f"(the thread converts to {expected} items): it was changed outside the console. "
        "Nothing was deleted. Re-migrate to start a new conversation.",
    )


def reconcile(run: Run, items: list[dict[str, Any]]) -> int:
    """Catch up with items the server has but we did not record (a write applied whose answer
    was lost), taking back provable copies. Lists after the last recorded item; if that item is
    gone, the whole conversation. Anything the console cannot account for is a conflict."""
    try:
        alignment = align(run, items, after=run.last_item_id or None, start=run.committed,
                          anchors=run.anchors)  # fmt: skip
        committed = run.committed + alignment.matched
    except CursorGone:
        alignment = align(run, items, after=None, start=0, anchors=run.anchors)
        committed = alignment.matched
    if alignment.conflict:
        raise _conflict(run, alignment, len(items), "Resuming failed")
    take_back(run, alignment.copies)
    if committed != run.committed or (alignment.last_id and alignment.last_id != run.last_item_id):
        run.record(committed, alignment.last_id or run.last_item_id)
    return alignment.matched


def take_back(run: Run, item_ids: list[str]) -> None:
    """Delete provable copies of our items (DESIGN.md, "Provenance"), under the lease."""
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
            if failed.failure.http_status != 404:  # already gone is what we wanted
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
                claim=(start, len(batch)),
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
            record_written(run, start, result)
        size = min(MAX_ITEMS_PER_CALL, size * 2)


def record_written(run: Run, start: int, item_ids: list[str]) -> None:
    """Record a write whose answer came back. If the lease was lost meanwhile (the worker froze
    while its request was under way and another worker took over), the write may have landed
    behind the new owner's back: it is announced with its ids, and taken back by the owner, or
    by this worker if the thread was verified already (`settle_late_writes`)."""
    try:
        run.record(start + len(item_ids), item_ids[-1])
    except LeaseLost:
        announce(run, start, len(item_ids), WriteClaim.Reason.LATE, item_ids)
        raise LeaseLost(
            f"the lease was taken over while {len(item_ids)} items were being written"
        ) from None
    run.anchors.update((item_id, start + offset) for offset, item_id in enumerate(item_ids))


def withdraw(run: Run, request: Callable[[], Any]) -> bool:
    """Undo this worker's own write without a lease (it has none any more), inside the request
    budget; transient errors are retried. True if it was done."""
    for attempt in range(run.worker.max_retries + 1):
        wait = run.worker.limiter.reserve()
        if wait > 0:
            run.worker.sleeper(wait)
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
    """List the whole conversation: it must hold exactly the thread's items, in order. Provable
    copies are taken back first, keeping the items this worker knows it wrote; the recorded last
    item is then the conversation's last."""
    anchors = dict(run.anchors)
    if run.last_item_id and run.committed:
        anchors[run.last_item_id] = run.committed - 1
    for _ in range(VERIFY_ROUNDS):
        ahead = page_ends(anchors, len(items))
        alignment = align(run, items, after=None, start=0, anchors=anchors, ahead=ahead)
        if alignment.conflict or alignment.matched != len(items):
            raise _conflict(run, alignment, len(items), "Verification failed")
        if not alignment.copies:
            run.last_item_id = alignment.last_id
            return alignment.listed
        take_back(run, alignment.copies)
    raise _failure(
        ErrorKind.TRANSIENT,
        f"Copies kept appearing in conversation {run.thread.conversation_id} while it was "
        "verified; retry once the workers that lost their leases have stopped.",
    )


def page_ends(anchors: dict[str, int], total: int) -> list[str]:
    """The ids that end the pages of a listing from the start, for as long as this worker wrote
    them (the last item ends no page that has one after it)."""
    by_index = {index: item_id for item_id, index in anchors.items()}
    ends = []
    for index in range(openai_client.PAGE_SIZE - 1, total - 1, openai_client.PAGE_SIZE):
        if index not in by_index:
            break
        ends.append(by_index[index])
    return ends


def verify_and_succeed(run: Run, items: list[dict[str, Any]]) -> None:
    """Verify, then succeed fenced on the claims the verification saw: a late write announced
    after its last listing sends it round again (DESIGN.md, "Provenance")."""
    for _ in range(VERIFY_ROUNDS):
        count = verify(run, items)
        try:
            states.succeed(run.lease, run.attempt.pk, count, run.last_item_id,
                           claim_seq=run.claim_seq, **_attempt_fields(run, count))  # fmt: skip
            return
        except states.ClaimsChanged:
            run.claim_seq = states.claim_seq(run.thread.pk)
    raise _failure(
        ErrorKind.TRANSIENT,
        "Late writes kept being announced while the thread was verified; retry once the workers "
        "that lost their leases have stopped.",
    )


# --- a worker's own late writes ----------------------------------------------------------------
def settle_late_writes(run: Run) -> str:
    """A worker that stops without its lease after announcing a write that may have landed
    unrecorded makes sure it is resolved (DESIGN.md, "Provenance"): a thread still running or
    queued is its owner's to resolve, since its `succeed` is fenced on the claims; a thread
    verified already is reopened by this worker, which takes its copies back and verifies again.
    Returns a note for the attempt's history."""
    if not run.announced:
        return ""
    now = Thread.objects.filter(pk=run.thread.pk).values("status", "conversation_id").first()
    if now is None:
        return ""
    if now["conversation_id"] != run.thread.conversation_id:
        return (
            f"; its write to conversation {run.thread.conversation_id}, which the thread no "
            "longer uses, is recorded as a claim"
        )
    if now["status"] != ThreadStatus.SUCCEEDED:
        return "; its write is recorded for whoever resumes the thread, who takes back any copy"
    outcome = repair(run.thread.pk, run.thread.conversation_id, run.worker)
    return f"; the thread was verified already, so this worker checked it again: {outcome}"


def repair(thread_pk: int, conversation_id: str, worker: Worker) -> str:
    """Reopen a verified thread, take back provable copies, verify again; returns the outcome."""
    lease = states.reopen_for_repair(
        thread_pk, conversation_id, worker.lease_owner(), worker.lease_seconds, worker.clock
    )
    if lease is None:
        return "it had moved on"
    thread = Thread.objects.get(pk=thread_pk)
    runs: list[Run] = []

    def items_to_verify(run: Run) -> list[dict[str, Any]]:
        runs.append(run)
        return conversion_for(run.thread)[0].items

    outcome = run_attempt(thread, lease, worker, Attempt.Action.REPAIR, items_to_verify)
    taken = runs[0].taken_back if runs else 0
    return f"{outcome}, {taken} {'copy' if taken == 1 else 'copies'} taken back"


def recheck_claims(limit: int = 100, worker: Worker | None = None) -> int:
    """A write the console claimed may land as late as a lease after the claim (the server was
    slow to apply it; its answer lost). A thread verified before that is verified once more, by
    the sweeper, and provable copies taken back (DESIGN.md, "Provenance"). Returns how many
    threads were checked again."""
    lease = timedelta(seconds=settings.MIGRATION_LEASE_SECONDS)
    due = WriteClaim.objects.filter(checked_at__isnull=True, created_at__lt=timezone.now() - lease)
    pairs = list(due.values_list("thread_id", "conversation_id").distinct()[:limit])
    rechecked = 0
    for thread_pk, conversation_id in pairs:
        claims = due.filter(thread_id=thread_pk, conversation_id=conversation_id)
        live = Conversation.objects.live().filter(thread_id=thread_pk).first()
        if live is None or live.conversation_id != conversation_id:
            claims.update(checked_at=Now())  # not the thread's conversation any more
            continue
        status = Thread.objects.filter(pk=thread_pk).values_list("status", flat=True).first()
        if status != ThreadStatus.SUCCEEDED:
            continue  # its next run loads the claims and lists after them
        latest = max(claims.values_list("created_at", flat=True))
        if not (live.verified_at and live.verified_at > latest + lease):
            repair(thread_pk, conversation_id, worker or Worker())
            rechecked += 1
        claims.update(checked_at=Now())
    return rechecked


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
    thread = lease.thread or Thread.objects.get(pk=thread_pk)
    action = thread.requested_action or Attempt.Action.MIGRATE
    if action == Attempt.Action.SYNC:
        from migrations_app import sync

        return run_attempt(thread, lease, worker, action, sync.sync_work)
    return run_attempt(thread, lease, worker, action, _migrate)


def run_attempt(
    thread: Thread, lease: Lease, worker: Worker, action: str, work: Callable[[Run], Any]
) -> str:
    """One attempt under a lease: `work` brings the conversation up to the thread's items, which
    are then verified; the attempt ends succeeded, failed or abandoned, whatever happens."""
    attempt = states.open_attempt(lease, action, f"worker {worker.name}", thread.attempts)
    run = Run(thread, lease, worker, attempt, thread.items_committed, thread.last_item_id,
              claim_seq=thread.claim_seq)  # fmt: skip
    try:
        verify_and_succeed(run, work(run))
    except LeaseLost as lost:
        states.abandon_attempt(attempt.pk, f"Stopped: {lost}{settle_late_writes(run)}")
        return Attempt.Outcome.ABANDONED
    except HandingBack:
        states.hand_back(lease, attempt.pk)
        return Attempt.Outcome.ABANDONED
    except states.Diverged as diverged:
        states.diverge(lease, attempt.pk, f"Diverged: {diverged}.", **_attempt_fields(run))
        return Attempt.Outcome.FAILED
    except ThreadFailed as failed:
        return _fail(run, failed.failure)
    except Exception as error:
        log.exception("migrating %s failed", thread.thread_id)
        return _fail(run, ApiFailure(ErrorKind.INTERNAL, f"Console error: {error!r}"))
    return Attempt.Outcome.SUCCEEDED


def _migrate(run: Run) -> list[dict[str, Any]]:
    try:
        ensure_mirrored(run)
        if run.thread.requested_action == Attempt.Action.REMIGRATE:
            _begin_remigrate(run)
        return resume_upload(run)
    finally:
        withdraw_early(run, run.early)  # created early, and the attempt stopped before using it


def resume_upload(run: Run) -> list[dict[str, Any]]:
    """Bring the conversation up to the mirror's items, from where it stands (creating it empty
    first if the thread has none); returns the items, for the verification."""
    conversion, options = conversion_for(run.thread)
    if run.thread.conversation_id:  # resumed: the totals of a new conversation go with it
        states.set_totals(run.lease, len(conversion.items), len(conversion.warnings))
    if ensure_conversation(run, conversion, options):
        reconcile(run, conversion.items)
    upload_items(run, conversion.items)
    return conversion.items


def _begin_remigrate(run: Run) -> None:
    """A re-migrate replaces the thread's conversation only now that its new upload starts: until
    then the mapping kept the old one (and a cancel would have left it so)."""
    replaced = states.begin_remigrate(run.lease)
    if replaced:
        run.replaced = replaced
        run.thread.conversation_id = ""
        run.committed, run.last_item_id, run.anchors = 0, "", {}


def _attempt_fields(run: Run, items: int | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"items_committed": run.committed}
    if items is not None:
        detail["items"] = items
    if run.ambiguous_creates:
        detail["possible_empty_conversations"] = run.ambiguous_creates
    if run.taken_back:
        detail["copies_taken_back"] = run.taken_back
    if run.replaced:
        detail["replaced"] = run.replaced
    if run.synced is not None:
        detail.update(run.synced)
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
        states.abandon_attempt(run.attempt.pk, f"Stopped: {lost}{settle_late_writes(run)}")
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
    (its slowest thread) and connecting again for each thread.

    A stopping process (SIGTERM, its cluster stopping) hands its threads back: each stops at
    its next request and is queued again for another worker, and the process exits once they
    have, or after HAND_BACK_SECONDS whatever is still in flight (its lease then runs out and
    the sweeper resumes it). The threads are daemons, so nothing else keeps the process."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pid = os.getpid()
        self.slots = threading.BoundedSemaphore(size)
        self.work: queue.SimpleQueue[tuple[int, threading.Event] | None] = queue.SimpleQueue()
        self.threads = [
            threading.Thread(target=self._serve, name=f"migrate_{index}", daemon=True)
            for index in range(size)
        ]
        for thread in self.threads:
            thread.start()
        # At the process's exit (its worker loop ended), before Python joins its threads.
        multiprocessing.util.Finalize(self, self.close, exitpriority=10)

    def _serve(self) -> None:
        while (job := self.work.get()) is not None:
            self.run(*job)
        connections.close_all()

    def run(self, pk: int, taken: threading.Event) -> None:
        try:
            close_old_connections()  # a connection that failed or outlived CONN_MAX_AGE
            migrate_thread(pk, Worker(), on_taken=taken.set)
        except Exception:
            log.exception("migrating thread %s stopped", pk)
        finally:
            taken.set()
            self.slots.release()

    def close(self, grace: float | None = None) -> None:
        """Hand the threads in flight back and stop, waiting at most `grace` seconds."""
        STOPPING.set()
        for _ in self.threads:
            self.work.put(None)
        deadline = time.monotonic() + (HAND_BACK_SECONDS if grace is None else grace)
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))


# Set when this process stops: its threads hand their threads back at their next request.
STOPPING = threading.Event()
# How long a stopping process waits for its threads to hand back (a request in flight ends).
HAND_BACK_SECONDS = 10.0
_pool: _ProcessPool | None = None
_pool_lock = threading.Lock()


def stop_soon() -> None:
    """This process is stopping (SIGTERM): its threads hand their threads back."""
    STOPPING.set()


def close_pool(grace: float = 60.0) -> None:
    """Stop this process's pool, if it has one (tests; a stopping worker closes it at exit)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None and pool.pid == os.getpid():
        pool.close(grace)
    STOPPING.clear()


def _process_pool() -> _ProcessPool:
    global _pool
    size = settings.MIGRATION_THREADS_PER_WORKER
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid() or _pool.size != size:
            _pool = _ProcessPool(size)
        return _pool


def hand_over(thread_pks: Iterable[int], *, seconds: float | None = None) -> dict[str, int]:
    """A worker task: run threads on this process's pool, at most MIGRATION_THREADS_PER_WORKER
    at once; returns when every one has been taken (or skipped), so none is left queued without
    its task. They finish after the task returns; a stopping process hands them back.

    It never holds its task longer than `seconds` (half of Q_TIMEOUT): threads no slot took by
    then, or once the process is stopping, go back to the queue in a task of their own, so a
    pool full of long threads never makes django-q2 kill the process and every thread in it."""
    pool = _process_pool()
    budget = settings.Q_CLUSTER["timeout"] / 2 if seconds is None else seconds
    deadline = time.monotonic() + budget
    pks = list(thread_pks)
    events: list[threading.Event] = []
    for pk in pks:
        if not _free_slot(pool, deadline):
            break
        taken = threading.Event()
        events.append(taken)
        pool.work.put((pk, taken))
    for taken in events:
        taken.wait()
    left = pks[len(events) :]
    result = {"handed over": len(events)}
    if left:
        result["back to the queue"] = states.requeue_waiting(left)
    return result


def _free_slot(pool: _ProcessPool, deadline: float) -> bool:
    """Wait for a free thread of the pool until `deadline`; False if none came or the process is
    stopping."""
    while not STOPPING.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if pool.slots.acquire(timeout=min(left, 1.0)):
            return True
    return False

"""The retention watchdog: every migrated conversation is read again at least once per WATCH_DAYS.

A verified conversation can still be lost later: conversation items on Azure Foundry have been
seen to answer 404 after about three months (Azure/azure-sdk-for-net#59964). So a scheduled task
(every RUN_EVERY_MINUTES, tasks.watch_conversations) re-reads a paced sample of the succeeded
threads' live conversations, least recently read first, within the destination's request budget
(`ratelimit.shared(DESTINATION)`, shared with the migration):

- each run reads its share, `ceil(migrated / runs in WATCH_DAYS)`, so the whole set is read once
  per WATCH_DAYS; conversations already overdue (the watchdog was not running) are read on top,
  until the run's time is up;
- a read lists the conversation's items from the start, up to the verified count (one request
  per 100 items), and compares them with what was verified: at least `verified_item_count`
  items, and the last verified one (`last_item_id`) in its place. Items an application added
  after them (the conversation continuing, as it should) are not read and do not matter;
- a 404, fewer items, or another item where the last verified one was, marks the thread lost at
  the destination (states.mark_lost: failed, remedy re-migrate; its conversation id and rows are
  kept). A thread re-migrated meanwhile is not touched;
- an intact conversation's tokens are counted again for the readiness check (readiness.py).

A safety catch: a destination key or URL pointed at another project answers 404 for every
conversation. When at least BREAKER_MIN conversations were read in a run and more than
BREAKER_SHARE of them came back lost, the run marks none of them, says why in its result (the
dashboard shows it) and leaves them to be read again.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from migrations_app import openai_client, readiness, states, tallies
from migrations_app.models import Conversation, ErrorKind, ThreadStatus

RUN_EVERY_MINUTES = 5  # the schedule's interval (migration 0015)
RUN_SECONDS = 240.0  # a run takes no new conversation after this (the next one starts at 300)
MAX_PER_RUN = 20_000
CLAIM_CHUNK = 50
BREAKER_MIN = 10
BREAKER_SHARE = 0.5
# Failure messages are the same for every thread (the dashboard groups failures by message);
# what was found is in each thread's history row.
GONE = "Lost at the destination: the conversation or its items are not found (HTTP {status})."
FEWER = "Lost at the destination: the conversation holds fewer items than were verified."
CHANGED = "Lost at the destination: the last verified item is no longer in its place."


def due_order() -> Coalesce:
    return Coalesce("watched_at", "verified_at", output_field=DateTimeField())


def watched() -> QuerySet[Conversation]:
    """The conversations the watchdog reads: migrated threads' live, verified ones."""
    return Conversation.objects.live().filter(
        verified_at__isnull=False, thread__status=ThreadStatus.SUCCEEDED
    )


def share_per_run(migrated: int, days: int | None = None) -> int:
    """How many conversations one run reads so that all `migrated` are read once in `days`."""
    runs = (days or settings.WATCH_DAYS) * 24 * 60 / RUN_EVERY_MINUTES
    return math.ceil(migrated / runs) if migrated else 0


@dataclass
class Claimed:
    pk: int
    thread_id: int
    conversation_id: str
    verified_item_count: int
    last_item_id: str
    previous: datetime | None  # watched_at before the claim: put back if the read failed
    model: str


@dataclass
class Lost:
    message: str
    http_status: int | None = None
    request_id: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Watch:
    read: int = 0
    intact: int = 0
    lost: int = 0
    not_read: int = 0  # transient errors: read again at the next run
    held_back: int = 0  # looked lost, not marked: the safety catch
    recounted: int = 0
    stopped: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if value or key == "read"}


def claim(count: int, *, overdue_before: datetime | None = None) -> list[Claimed]:
    """Take the `count` conversations read longest ago (only those last read before
    `overdue_before`, if given), marking them read now so that another run does not take them."""
    if count <= 0:
        return []
    now = timezone.now()
    due = watched()
    if overdue_before is not None:
        due = due.annotate(due=due_order()).filter(due__lt=overdue_before)
    with transaction.atomic():
        rows = list(
            due.select_for_update(skip_locked=True, of=("self",))
            .order_by(due_order())
            .values_list(
                "pk",
                "thread_id",
                "conversation_id",
                "verified_item_count",
                "last_item_id",
                "watched_at",
                "thread__assistant__model",
            )[:count]
        )
        Conversation.objects.filter(pk__in=[row[0] for row in rows]).update(watched_at=now)
    return [
        Claimed(pk, thread, conversation, verified or 0, last or "", previous, model or "")
        for pk, thread, conversation, verified, last, previous, model in rows
    ]


def put_back(claimed: Claimed) -> None:
    """A conversation that could not be read is due again at once."""
    Conversation.objects.filter(pk=claimed.pk).update(watched_at=claimed.previous)


class NotRead(Exception):
    pass


class Reader:
    """Reads conversations back through the destination client, paced by the shared budget."""

    def __init__(self, counter: readiness.Counter | None = None) -> None:
        self.counter = counter or readiness.Counter()

    def check(self, claimed: Claimed) -> Lost | None:
        """None if the verified items are where they were; what was found otherwise. Raises
        NotRead (a transient error) or the API's error for anything that says nothing about
        the conversation (auth)."""
        expected = claimed.verified_item_count
        listed: list[str] = []
        after: str | None = None
        try:
            while True:
                page = self.counter.send(
                    functools.partial(
                        openai_client.items_page,
                        self.counter.client,
                        claimed.conversation_id,
                        after,
                    )
                )
                listed += [item["id"] for item in page["data"]]
                if len(listed) >= expected or not page.get("has_more") or not page["data"]:
                    break
                after = page["data"][-1]["id"]
        except Exception as error:
            failure = openai_client.classify(error)
            if failure.kind == ErrorKind.NOT_FOUND:
                return Lost(
                    GONE.format(status=failure.http_status),
                    failure.http_status,
                    failure.request_id,
                    {"expected_items": expected, "answer": failure.message[:500]},
                )
            if failure.kind in (ErrorKind.AUTH, ErrorKind.RATE_LIMITED):
                raise
            raise NotRead(failure.message) from None
        detail = {"expected_items": expected, "expected_last_item": claimed.last_item_id}
        if len(listed) < expected:
            return Lost(FEWER, detail={**detail, "found_items": len(listed)})
        if expected and claimed.last_item_id and listed[expected - 1] != claimed.last_item_id:
            return Lost(CHANGED, detail={**detail, "found_in_its_place": listed[expected - 1]})
        return None


def run(
    *,
    seconds: float = RUN_SECONDS,
    reader: Reader | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Watch:
    """One run: its share of conversations, then any overdue ones, until `seconds` are up."""
    deadline = clock() + seconds
    result = Watch()
    migrated = tallies.status_counts().get(ThreadStatus.SUCCEEDED, 0)
    share = share_per_run(migrated)
    if not share:
        return result
    reader = reader or Reader()
    overdue = timezone.now() - timedelta(days=settings.WATCH_DAYS)
    found_lost: list[tuple[Claimed, Lost]] = []
    # Claimed and not read (an error, or the run's time was up): due again once the run ends
    # (not before, or this run would take them again at once).
    unread: list[Claimed] = []
    taken = 0
    while clock() < deadline and taken < MAX_PER_RUN and not result.stopped:
        in_share = taken < share
        wanted = min(CLAIM_CHUNK, share - taken) if in_share else CLAIM_CHUNK
        batch = claim(wanted, overdue_before=None if in_share else overdue)
        if not batch:
            break
        taken += len(batch)
        for claimed in batch:
            if clock() >= deadline or result.stopped:
                unread.append(claimed)
                continue
            _read_one(reader, claimed, result, found_lost, unread)
    unread += _mark(found_lost, result)
    for claimed in unread:
        put_back(claimed)
    return result


def _read_one(
    reader: Reader,
    claimed: Claimed,
    result: Watch,
    found_lost: list[tuple[Claimed, Lost]],
    unread: list[Claimed],
) -> None:
    try:
        lost = reader.check(claimed)
    except NotRead:
        unread.append(claimed)
        result.not_read += 1
        return
    except Exception as error:
        unread.append(claimed)
        result.stopped = f"stopped: {openai_client.classify(error).message}"
        return
    result.read += 1
    if lost is not None:
        found_lost.append((claimed, lost))
        return
    result.intact += 1
    if claimed.model:
        try:
            conversation = Conversation(pk=claimed.pk, conversation_id=claimed.conversation_id)
            reader.counter.count(conversation, claimed.model)
            result.recounted += 1
        except readiness.CountFailed:
            pass  # the reason is stored on the conversation
        except Exception as error:
            result.stopped = f"stopped: {openai_client.classify(error).message}"


def _mark(found_lost: list[tuple[Claimed, Lost]], result: Watch) -> list[Claimed]:
    """Mark the threads lost, unless the safety catch holds them back (returned: read again)."""
    if result.read >= BREAKER_MIN and len(found_lost) > BREAKER_SHARE * result.read:
        result.held_back = len(found_lost)
        result.stopped = (
            f"{len(found_lost)} of {result.read} conversations read looked lost: none was "
            "marked. Check that OPENAI_API_KEY and OPENAI_BASE_URL point at the project the "
            "conversations were created in."
        )
        return [claimed for claimed, _ in found_lost]
    for claimed, lost in found_lost:
        detail = {**lost.detail, "conversation": claimed.conversation_id}
        if states.mark_lost(
            claimed.thread_id,
            claimed.conversation_id,
            lost.message,
            http_status=lost.http_status,
            request_id=lost.request_id,
            detail=detail,
        ):
            result.lost += 1
    return []


# --- what the dashboard shows -------------------------------------------------------------------
WATCHER = "migrations_app.tasks.watch_conversations"
COUNTED_UP_TO = 10_000


@dataclass
class Figures:
    lost: int  # threads failed as lost at the destination now
    overdue: int  # migrated conversations not read for WATCH_DAYS (counted up to 10,001)
    days: int
    scheduled: bool
    last_run: datetime | None
    last_result: dict[str, Any]


def figures() -> Figures:
    """A handful of rows: the failure tallies, a bounded index scan, the last run's record."""
    from django.db.models import Sum
    from django_q.models import Schedule, Task

    from migrations_app.models import FailureTally

    lost = FailureTally.objects.filter(error_kind=ErrorKind.LOST).aggregate(n=Sum("count"))["n"]
    since = timezone.now() - timedelta(days=settings.WATCH_DAYS)
    overdue = watched().annotate(due=due_order()).filter(due__lt=since)
    last = Task.objects.filter(func=WATCHER).order_by("-stopped").values("stopped", "result")
    run = last.first() or {}
    result = run.get("result")
    return Figures(
        lost=lost or 0,
        overdue=overdue.values("pk")[: COUNTED_UP_TO + 1].count(),
        days=settings.WATCH_DAYS,
        scheduled=Schedule.objects.filter(func=WATCHER).exists(),
        last_run=run.get("stopped"),
        last_result=result if isinstance(result, dict) else {},
    )

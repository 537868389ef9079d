"""Delta re-sync and cutover: what users say after a thread was migrated reaches its conversation.

Azure's classic agents (the one live source left, until 2027-03-31) keep receiving messages
while a customer migrates. A migrated (succeeded) thread is brought up to date in two steps:

1. **A check**, outside the state machine: one request per thread, the source's messages after
   the last one the verified conversation holds (`Thread.synced_message_id`). A thread with
   nothing new only gets its `synced_at` moved on (one statement per group of threads). A thread
   whose last migrated message is gone at the source has diverged.
2. **A sync**, for the threads with something new: queued like any action (`states.queue(…,
   "sync")`) and run by a worker under the thread's lease (`sync_work`): it reads the new
   messages and the tool-call steps of their runs, checks that the thread with them still
   converts to the items already migrated followed by new ones (else the thread has diverged:
   marked for staff, never rewritten), adds them to the mirror and appends the new items to the
   same conversation with the engine's usual claims, reconcile and verify.

**Cutover, per import batch** (`ImportBatch.cutover`): *live* (synced when staff ask, or every
SYNC_EVERY_MINUTES); *final sync* (staff confirmed the application stopped writing: one last
sync that also re-reads each thread whole, so any earlier message that changed or disappeared
marks it diverged); *cut over* (no more syncs; the mapping is final).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from migrations_app import bulk, states
from migrations_app.conversion import Options, convert_thread, item_fingerprint
from migrations_app.models import (
    ImportBatch,
    Message,
    RunStep,
    Thread,
    ThreadStatus,
)
from migrations_app.preview import export_errors

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from migrations_app.upload import Run

log = logging.getLogger(__name__)
CHECK_TASK = "migrations_app.tasks.check_for_new_messages"
CHECK_GROUP_SIZE = 200  # threads per check task
AZURE_RETIREMENT = date(2027, 3, 31)  # Foundry's classic agents stop answering


# --- which threads a sync applies to -------------------------------------------------------------
def syncable(threads: Any = None) -> Any:
    """Migrated threads a sync may bring up to date: succeeded, not diverged, in a batch that is
    not cut over."""
    threads = Thread.objects.all() if threads is None else threads
    return threads.filter(states.ELIGIBLE["sync"])


def due_for_sync(every: timedelta) -> Any:
    """The threads of live batches (or of none) not checked within `every`, least recent first."""
    live = Q(import_batch__isnull=True) | Q(import_batch__cutover=ImportBatch.Cutover.LIVE)
    stale = Q(synced_at__isnull=True) | Q(synced_at__lt=timezone.now() - every)
    return syncable().filter(live, stale).order_by("synced_at")


# --- step 1: the check ---------------------------------------------------------------------------
@dataclass
class Checked:
    up_to_date: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    diverged: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (pk, why): checked again later


def check(thread_pks: Sequence[int], client: Any = None) -> Checked:
    """Whether each migrated thread has new messages at the source: one request each, several
    at once, each in its slot of the source's budget (taken by this thread: the reads in flight
    touch no database)."""
    from migrations_app import openai_client

    client = client or openai_client.source_client()
    rows = list(
        syncable(Thread.objects.filter(pk__in=list(thread_pks))).values_list(
            "pk", "thread_id", "synced_message_id"
        )
    )
    cursors = _cursors(rows)

    def one(thread_id: str, cursor: str) -> Any:
        try:
            return bool(openai_client.messages_after(client, thread_id, cursor or None)["data"])
        except Exception as error:
            return openai_client.classify(error)

    answers = openai_client.in_parallel(
        [partial(one, thread_id, cursors.get(pk, "")) for pk, thread_id, _ in rows]
    )
    result = Checked()
    for (pk, _, _), answer in zip(rows, answers, strict=True):
        if answer is True:
            result.changed.append(pk)
        elif answer is False:
            result.up_to_date.append(pk)
        elif cursors.get(pk) and answer.http_status in (400, 404):
            reason = f"its last migrated message {cursors[pk]} is gone at the source"
            if "thread" in answer.message.lower() and answer.http_status == 404:
                reason = f"the thread is gone at the source ({answer.message})"
            if states.mark_diverged(pk, f"Diverged: {reason}."):
                result.diverged.append(pk)
        else:
            result.failed.append((pk, answer.message))
    states.synced(result.up_to_date)
    return result


def _cursors(rows: list[tuple[int, str, str]]) -> dict[int, str]:
    """Each thread's sync cursor: the last message its verified conversation holds (threads
    migrated before syncs existed: the mirror's last message)."""
    cursors = {pk: cursor for pk, _, cursor in rows if cursor}
    missing = [pk for pk, _, cursor in rows if not cursor]
    if missing:
        last = Message.objects.filter(thread_id__in=missing).order_by("thread_id", "position")
        for thread_pk, message_id in last.values_list("thread_id", "message_id"):
            cursors[thread_pk] = message_id  # the last one per thread wins
    return cursors


def check_and_queue(
    thread_pks: Sequence[int], *, group: str, user: User | None = None, actor_label: str = ""
) -> Checked:
    """Check the threads and queue a sync for those with something new."""
    checked = check(thread_pks)
    if checked.changed:
        states.queue(checked.changed, "sync", group=group, user=user, actor_label=actor_label)
    return checked


def queue_checks(threads: Iterable[int], *, group: str) -> int:
    """One check task per group of threads; returns how many threads were handed over."""
    from django_q.tasks import async_task

    count = 0
    batch: list[int] = []
    for pk in threads:
        batch.append(pk)
        if len(batch) >= CHECK_GROUP_SIZE:
            async_task(CHECK_TASK, batch, group, group=group)
            count += len(batch)
            batch = []
    if batch:
        async_task(CHECK_TASK, batch, group, group=group)
        count += len(batch)
    return count


# --- step 2: the sync, under the thread's lease -------------------------------------------------
def sync_work(run: Run) -> list[dict[str, Any]]:
    """The work of a sync attempt (upload.run_attempt verifies and succeeds after it): read what
    is new, check it only appends, add it to the mirror, append its items. Raises Diverged."""
    from migrations_app import upload

    thread = run.thread
    conversion, options = upload.conversion_for(thread)
    deep = _final_sync(thread)
    source = _read_source(run, deep)
    if deep:
        _compare_whole(run, source)
    messages, steps = _mirror(thread)
    known = {m["id"] for m in messages}
    new_messages = [m for m in source["messages"] if m["id"] not in known]
    known_steps = {s["id"] for s in steps}
    new_steps = [s for s in source["run_steps"] if s["id"] not in known_steps]
    if new_messages or new_steps:
        after = convert_thread(
            thread.data or {}, messages + new_messages, steps + new_steps, options,
            export_errors=export_errors(thread),
        )  # fmt: skip
        _check_appends_only(conversion.items, after.items)
        _append_to_mirror(run, new_messages, new_steps, options)
        run.synced = {"new_messages": len(new_messages), "items_added": len(after.items) -
                      len(conversion.items)}  # fmt: skip
    else:
        run.synced = {"new_messages": 0, "items_added": 0}
    return upload.resume_upload(run)


def _final_sync(thread: Thread) -> bool:
    return bool(
        thread.import_batch_id
        and ImportBatch.objects.filter(
            pk=thread.import_batch_id, cutover=ImportBatch.Cutover.FINAL_SYNC
        ).exists()
    )


def _read_source(run: Run, deep: bool) -> dict[str, Any]:
    """The new part of the thread at the source (deep: the whole thread), read through the
    engine's retry policy under the lease."""
    from migrations_app import openai_client, upload

    thread = run.thread
    cursor = thread.synced_message_id or _cursors([(thread.pk, thread.thread_id, "")]).get(
        thread.pk, ""
    )

    def read() -> dict[str, Any]:
        with openai_client.guarded_reads(run.hold, run.worker.sleeper):
            client = run.worker.source_client
            if deep:
                return openai_client.fetch_thread_bundle(client, thread.thread_id)
            first = openai_client.messages_after(client, thread.thread_id, cursor or None)
            return openai_client.delta_bundle(client, thread.thread_id, first)

    try:
        return upload.call_api(run, read, source=True)
    except upload.ThreadFailed as failed:
        if cursor and failed.failure.http_status in (400, 404):
            raise states.Diverged(
                f"its last migrated message {cursor} is gone at the source"
            ) from None
        raise


def _mirror(thread: Thread) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    messages = list(thread.messages.order_by("position").values_list("data", flat=True))
    steps = list(thread.run_steps.order_by("created_at", "pk").values_list("data", flat=True))
    return messages, steps


def _compare_whole(run: Run, source: dict[str, Any]) -> None:
    """A final sync: every message migrated must still be at the source, unchanged."""
    mirrored = {m["id"]: m for m in _mirror(run.thread)[0]}
    at_source = {m["id"]: m for m in source["messages"]}
    gone = [message_id for message_id in mirrored if message_id not in at_source]
    if gone:
        raise states.Diverged(
            f"{len(gone)} migrated message(s) are gone at the source ({gone[0]}, …)"
        )
    changed = [
        message_id
        for message_id, message in mirrored.items()
        if _content(at_source[message_id]) != _content(message)
    ]
    if changed:
        raise states.Diverged(
            f"{len(changed)} migrated message(s) changed at the source ({changed[0]}…)"
        )


def _content(message: dict[str, Any]) -> tuple[Any, ...]:
    return message.get("role"), message.get("content"), message.get("attachments")


def _check_appends_only(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    """The thread with its new messages must convert to the items migrated, then new ones."""
    migrated = [item_fingerprint(item) for item in before]
    now = [item_fingerprint(item) for item in after[: len(before)]]
    if now != migrated:
        first = next((i for i, (a, b) in enumerate(zip(migrated, now, strict=False)) if a != b),
                     len(now))  # fmt: skip
        raise states.Diverged(
            f"the new messages do not come after what was migrated: item {first + 1} of the "
            f"{len(before)} migrated would change (a message older than the last migrated one, "
            "or a tool call of a run already migrated)"
        )


def _append_to_mirror(run: Run, messages: list[dict[str, Any]], steps: list[dict[str, Any]],
                      options: Options) -> None:  # fmt: skip
    """Add the new messages and steps to the mirror, checked as intake checks a bundle, only
    while this worker holds the thread's lease."""
    from migrations_app.intake import BundleRejected, prepare

    thread = run.thread
    old_messages, old_steps = _mirror(thread)
    try:
        bundle = {"thread": thread.data, "messages": old_messages + messages,
                  "run_steps": old_steps + steps}  # fmt: skip
        if thread.export_info:  # what an export said of the thread still holds for its count
            bundle["export"] = thread.export_info
        prepared = prepare(bundle, options, where="source")
    except BundleRejected as rejected:
        raise states.Diverged(f"the source's new messages cannot be migrated: {rejected}") from None
    new_rows = [row for row in prepared.messages if row[1] >= len(old_messages)]
    new_ids = {step["id"] for step in steps}
    step_rows = [row for row in prepared.steps if row[0] in new_ids]
    with transaction.atomic():
        if not states.lock_writable_mirrors([thread.pk], run.lease.owner):
            raise states.LeaseLost(f"thread {thread.pk}: the lease was taken over during a sync")
        bulk.copy_rows(
            Message,
            ["thread_id", "message_id", "position", "role", "created_at", "data"],
            ((thread.pk, *row) for row in new_rows),
        )
        bulk.copy_rows(
            RunStep,
            ["thread_id", "step_id", "run_id", "created_at", "data"],
            ((thread.pk, *row) for row in step_rows),
        )
        Thread.objects.filter(pk=thread.pk).update(
            message_count=len(prepared.messages),
            warning_count=prepared.warning_count,
            items_total=prepared.items_total,
            updated_at=Now(),
        )
    thread.refresh_from_db()


# --- cutover, per import batch -------------------------------------------------------------------
CUTOVER_STEPS = {
    ImportBatch.Cutover.LIVE: ImportBatch.Cutover.FINAL_SYNC,
    ImportBatch.Cutover.FINAL_SYNC: ImportBatch.Cutover.CUT_OVER,
}


class CutoverRefused(Exception):
    """The batch is not where this step of the cutover starts, or its final sync is not done."""


def pending_in(batch: ImportBatch) -> int:
    """The batch's threads a sync is queued for or running."""
    return batch.threads.filter(
        status__in=[ThreadStatus.QUEUED, ThreadStatus.RUNNING], requested_action="sync"
    ).count()


def start_final_sync(batch: ImportBatch, *, user: User | None = None) -> int:
    """Staff confirmed the application stopped writing to the batch's threads: one last sync of
    every migrated thread of it, each re-read whole. Returns how many were queued."""
    _advance(batch, ImportBatch.Cutover.LIVE, ImportBatch.Cutover.FINAL_SYNC)
    group = f"final sync batch {batch.pk}"
    pks = list(syncable(batch.threads.all()).values_list("pk", flat=True))
    return len(states.queue(pks, "sync", group=group, user=user)) if pks else 0


def cut_over(batch: ImportBatch) -> None:
    """No more syncs for the batch: its mapping is final."""
    if pending_in(batch):
        raise CutoverRefused("its final sync is still running; cut over once it is done")
    _advance(batch, ImportBatch.Cutover.FINAL_SYNC, ImportBatch.Cutover.CUT_OVER)


def _advance(batch: ImportBatch, expected: str, to: str) -> None:
    moved = ImportBatch.objects.filter(pk=batch.pk, cutover=expected).update(
        cutover=to, cutover_changed_at=Now()
    )
    if not moved:
        batch.refresh_from_db()
        raise CutoverRefused(
            f"the batch is {batch.get_cutover_display().split(':')[0].lower()}, not "
            f"{ImportBatch.Cutover(expected).label.split(':')[0].lower()}"
        )
    batch.refresh_from_db()


# --- the dashboard's lines ---------------------------------------------------------------------
def days_left(today: date | None = None) -> int:
    return (AZURE_RETIREMENT - (today or timezone.localdate())).days


COUNTED = 10_000  # the dashboard counts these up to one more, in their partial indexes


def waiting_for_sync() -> int:
    """Threads with new messages not yet synced (queued or running for a sync), counted up to
    COUNTED + 1 in the partial index `thread_sync_waiting_idx`."""
    waiting = Thread.objects.filter(
        status__in=[ThreadStatus.QUEUED, ThreadStatus.RUNNING], requested_action="sync"
    )
    return waiting.order_by().values("pk")[: COUNTED + 1].count()


def diverged_count() -> int:
    """Diverged threads, counted up to COUNTED + 1 in `thread_diverged_idx`."""
    return Thread.objects.exclude(diverged="").order_by().values("pk")[: COUNTED + 1].count()


def schedule_every() -> timedelta | None:
    minutes = settings.SYNC_EVERY_MINUTES
    return timedelta(minutes=minutes) if minutes else None

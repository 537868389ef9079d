"""Thin django-q2 entry points: each calls one service function with plain ids."""

import logging
from datetime import timedelta
from typing import Any

from django.db.models.sql import Query
from django.utils import timezone

from migrations_app import actions, intake, states, sync, tallies
from migrations_app.intake.source import sweep_stopped_fetches
from migrations_app.models import Heartbeat


def fetch_from_source(thread_id: str) -> str:
    """One fetch staff queued (intake.queue_fetches): the thread into the mirror; returns the
    outcome recorded in its history."""
    from migrations_app.upload import worker_name  # loaded already in a worker process

    actor = f"worker {worker_name()}"
    try:
        attempt = intake.fetch_for_staff(thread_id, actor_label=actor)
    except Exception as error:  # recorded, so that the thread and its batch stop waiting
        log.exception("the fetch of %s stopped", thread_id)
        from migrations_app.intake.source import fetch_stopped

        fetch_stopped(thread_id, f"{type(error).__name__}: {error}", actor_label=actor)
        raise
    return attempt.outcome if attempt else "unknown thread"


# Fetch tasks queued before the rename still name the old function.
fetch_thread = fetch_from_source


def migrate_threads(thread_pks: list[int]) -> dict[str, int]:
    """A small group of threads, handed to this worker process's threads (upload.hand_over):
    the task returns once each is taken, and the process keeps its threads busy."""
    from migrations_app import upload  # the SDK: imported by the workers that need it, not by
    # every process that loads the admin (commands, web)

    return upload.hand_over(thread_pks)


def apply_bulk_action(bulk_pk: int, query: Query) -> str:
    """An action on many threads, applied a page at a time (see actions.run_bulk)."""
    return actions.run_bulk(bulk_pk, query)


log = logging.getLogger(__name__)
SWEEP = "sweep"
SWEEP_EVERY = timedelta(seconds=60)


def sweep_stuck_threads() -> dict[str, Any]:
    """Once a minute, by whichever process claims it (every worker process offers, see
    workers.py; django-q2's schedule is the fallback): resumes threads whose worker died or
    froze past its lease, re-queues queued threads no live task will take, closes attempts of
    dead workers, and fails imports and bulk actions whose worker stopped."""
    if not Heartbeat.objects.claim(SWEEP, SWEEP_EVERY):
        return {"skipped": "another process swept within the minute"}
    swept = states.sweep(f"resume {timezone.now():%Y-%m-%d %H:%M:%S}")
    tallies.compact()  # the dashboard's counters: one row per key again
    result = {
        "resumed": swept.resumed,
        "requeued": swept.requeued,
        "abandoned": swept.abandoned,
        "imports_failed": intake.sweep_stopped_imports(),
        "fetches_failed": sweep_stopped_fetches(),
        "bulk_actions_failed": actions.sweep_stopped_bulk_actions(),
        "rechecked": _recheck_claims(),
    }
    Heartbeat.objects.finished(SWEEP)
    return result


def check_for_new_messages(thread_pks: list[int], group: str) -> dict[str, int]:
    """A group of migrated threads checked for new source messages; those with some are queued
    for a sync (see sync.py)."""
    checked = sync.check_and_queue(thread_pks, group=group, actor_label="sync")
    return {
        "up to date": len(checked.up_to_date),
        "queued for a sync": len(checked.changed),
        "diverged": len(checked.diverged),
        "not checked (source error)": len(checked.failed),
    }


SYNC_PASS = "sync pass"


def sync_pass_if_due() -> int:
    """SYNC_EVERY_MINUTES: the migrated threads of live batches not checked within the interval
    are handed to check tasks, by whichever process claims the pass. Returns how many."""
    every = sync.schedule_every()
    if every is None or not Heartbeat.objects.claim(SYNC_PASS, every):
        return 0
    group = f"sync {timezone.now():%Y-%m-%d %H:%M}"
    pks = sync.due_for_sync(every).values_list("pk", flat=True).iterator(chunk_size=5000)
    handed = sync.queue_checks(pks, group=group)
    Heartbeat.objects.finished(SYNC_PASS)
    return handed


def _recheck_claims() -> int:
    from migrations_app import upload  # the SDK: only where a sweep runs (a worker)

    return upload.recheck_claims()


def watch_conversations() -> dict[str, Any]:
    """Scheduled every five minutes (migration 0015; a plain Schedule row, as the sweeper's):
    re-reads a paced share of the migrated conversations (watchdog.py), then counts the tokens
    of conversations migrated since the last run (readiness.py), both within the destination's
    request budget and within four minutes."""
    import time

    from migrations_app import readiness, watchdog

    started = time.monotonic()
    watch = watchdog.run()
    left = watchdog.RUN_SECONDS - (time.monotonic() - started)
    counted = readiness.Count()
    if left > 0 and not watch.stopped:
        counted = readiness.count_uncounted(READINESS_PER_RUN, deadline=time.monotonic() + left)
    return {"watch": watch.as_dict(), "readiness": counted.__dict__}


READINESS_PER_RUN = 1000  # first token counts per run: 200 requests a minute at most


def import_file(kind: str, name: str, filename: str, **options: Any) -> int:
    """An uploaded id list or export (`name` in the default storage), imported by a worker, then
    removed whatever happens (options: user_pk, batch_pk, fetch — see
    intake.uploads.import_upload). Returns the batch's pk; the batch ends done or failed."""
    from migrations_app.intake import uploads

    return uploads.import_upload(kind, name, filename, **options).pk

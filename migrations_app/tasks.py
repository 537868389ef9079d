"""Thin django-q2 entry points: each calls one service function with plain ids."""

import os
import socket
from collections.abc import Iterable

from django_q.tasks import async_task

from migrations_app import intake, states, upload


def worker_label():
    return f"worker {socket.gethostname()}:{os.getpid()}"


def fetch_thread(thread_id: str) -> str:
    """Fetch one thread into the mirror for staff; returns the outcome recorded in its history."""
    attempt = intake.fetch_thread(thread_id, actor_label=worker_label())
    return attempt.outcome if attempt else "unknown thread"


def queue_fetch(thread_ids: Iterable[str], group: str) -> int:
    """One task per thread: a fetch is a handful of reads, and per-thread tasks keep a slow
    thread from holding up others in its group. Returns how many were queued."""
    count = 0
    for thread_id in thread_ids:
        async_task("migrations_app.tasks.fetch_thread", thread_id, group=group)
        count += 1
    return count


def migrate_threads(thread_pks):
    """A small group of threads, migrated with several in flight (see upload.migrate_many)."""
    return upload.migrate_many(thread_pks)


def sweep_stuck_threads():
    """Scheduled every minute (migration 0003): resumes threads whose worker died or froze past
    its lease, re-queues queued threads whose task is gone, closes attempts of dead workers."""
    from django.utils import timezone

    swept = states.sweep(f"resume {timezone.now():%Y-%m-%d %H:%M:%S}")
    stopped_imports = intake.sweep_stopped_imports()
    return {
        "resumed": swept.resumed,
        "requeued": swept.requeued,
        "abandoned": swept.abandoned,
        "imports_failed": stopped_imports,
    }


def import_file(
    kind: str,
    name: str,
    filename: str,
    user_pk: int | None = None,
    batch_pk: int | None = None,
    fetch: bool = False,
) -> int:
    """An uploaded id list or export (`name` in the default storage), imported by a worker, then
    removed whatever happens; with `fetch`, the new ids are queued for fetching. Returns the
    batch's pk; the batch ends done or failed (see intake.uploads.import_upload)."""
    from migrations_app.intake import uploads

    batch = uploads.import_upload(
        kind, name, filename, user_pk=user_pk, batch_pk=batch_pk, fetch=fetch
    )
    return batch.pk

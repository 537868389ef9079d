"""Thin django-q2 entry points: each calls one service function with plain ids."""

import os
import socket

from django_q.tasks import async_task

from migrations_app import intake, states, tallies


def worker_label():
    return f"worker {socket.gethostname()}:{os.getpid()}"


def fetch_thread(thread_id):
    attempt = intake.fetch_thread(thread_id, actor_label=worker_label())
    return attempt.outcome


def queue_fetch(thread_ids, group):
    """One task per thread: a fetch is a handful of reads, and per-thread tasks keep a slow
    thread from holding up others in its group."""
    for thread_id in thread_ids:
        async_task("migrations_app.tasks.fetch_thread", thread_id, group=group)


def migrate_threads(thread_pks):
    """A small group of threads, handed to this worker process's threads (upload.hand_over):
    the task returns once each is taken, and the process keeps its threads busy."""
    from migrations_app import upload  # the SDK: imported by the workers that need it, not by
    # every process that loads the admin (commands, web)

    return upload.hand_over(thread_pks)


def sweep_stuck_threads():
    """Scheduled every minute (migration 0003): resumes threads whose worker died or froze past
    its lease, re-queues queued threads whose task is gone, closes attempts of dead workers."""
    from django.utils import timezone

    swept = states.sweep(f"resume {timezone.now():%Y-%m-%d %H:%M:%S}")
    tallies.compact()  # the dashboard's counters: one row per key again
    return {"resumed": swept.resumed, "requeued": swept.requeued, "abandoned": swept.abandoned}


def import_file(kind, path, filename, user_pk=None, batch_pk=None):
    """An uploaded id list or export, imported by a worker; returns the batch's pk."""
    from migrations_app.models import ImportBatch

    source = ImportBatch.Source.CSV if kind == "ids" else ImportBatch.Source.EXPORT
    batch = (
        ImportBatch.objects.get(pk=batch_pk)
        if batch_pk
        else ImportBatch(source=source, filename=filename, created_by_id=user_pk)
    )
    try:
        if kind == "ids":
            with open(path, encoding="utf-8-sig", newline="") as handle:
                intake.import_thread_ids(handle, batch=batch)
        else:
            intake.load_export(path, batch=batch)
    except UnicodeDecodeError as error:
        intake.fail_batch(batch, f"{filename} is not UTF-8 text ({error.reason})")
    except intake.IntakeError:
        pass  # recorded on the batch
    finally:
        os.remove(path)
    return batch.pk

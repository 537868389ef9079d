"""Thin django-q2 entry points: each calls one service function with plain ids."""

import os
import socket

from django_q.tasks import async_task

from migrations_app import actions, intake, upload


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
    """A small group of threads, migrated with several in flight (see upload.migrate_many)."""
    return upload.migrate_many(thread_pks)


def sweep_stuck_threads():
    """Scheduled every minute (migration 0003): resumes threads whose worker died."""
    return actions.sweep_stuck_threads()

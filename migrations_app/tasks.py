"""Thin django-q2 entry points: each calls one service function with plain ids."""

import os
import socket

from django_q.tasks import async_task

from migrations_app import intake


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

"""Helpers for tests that run the migration engine in-process against the sandbox."""

from migrations_app import actions, intake
from migrations_app.models import Thread


def register(sandbox, minimum=1, maximum=120, fetched=True, thread_id=None, queued=True):
    """A thread of the sandbox's, imported (and fetched), queued for a worker run by the test."""
    thread_id = thread_id or next(
        t
        for t, m in sandbox.state.messages.items()
        if minimum <= len(m) <= maximum and not Thread.objects.filter(thread_id=t).exists()
    )
    thread = Thread.objects.create(thread_id=thread_id)
    if fetched:
        intake.fetch_for_staff(thread_id)
    if queued:
        queue(thread)
    thread.refresh_from_db()
    sandbox.state.request_counts.clear()
    return thread


def queue(thread, action="migrate"):
    """Queue as staff would, without a django-q2 task: the test runs the worker itself."""
    assert actions.apply(action, Thread.objects.filter(pk=thread.pk), enqueue=False)[0] == 1
    thread.refresh_from_db()


def script(sandbox, *faults, times=1):
    """Faults the sandbox injects `times` each, on POSTs unless a fault names its method."""
    sandbox.state.configure_faults(
        scripted=[{"method": "POST", "times": times, **fault} for fault in faults]
    )

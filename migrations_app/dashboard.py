"""The figures the dashboard shows, each one query that an index serves."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, connections
from django.db.models import Count
from django.db.models.functions import TruncMinute
from django.utils import timezone

from migrations_app.models import RateLimit, Thread, ThreadStatus

SWEEPER = "migrations_app.tasks.sweep_stuck_threads"


@dataclass
class StatusCount:
    status: str
    label: str
    count: int


def status_counts():
    counts = dict(
        Thread.objects.order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return [StatusCount(s.value, s.label, counts.get(s.value, 0)) for s in ThreadStatus]


def migrated_per_minute(now=None, minutes=60):
    """[(minute, count)] for the last hour, zeros included, oldest first."""
    now = (now or timezone.now()).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=minutes - 1)
    rows = dict(
        Thread.objects.filter(status=ThreadStatus.SUCCEEDED, updated_at__gte=start)
        .annotate(minute=TruncMinute("updated_at"))
        .order_by()
        .values_list("minute")
        .annotate(n=Count("pk"))
        .values_list("minute", "n")
    )
    return [(start + timedelta(minutes=i), rows.get(start + timedelta(minutes=i), 0))
            for i in range(minutes)]  # fmt: skip


def failure_groups(limit=20):
    """Failed threads grouped by kind and message, biggest group first."""
    return list(
        Thread.objects.filter(status=ThreadStatus.FAILED)
        .order_by()
        .values("error_kind", "error_message")
        .annotate(count=Count("pk"))
        .order_by("-count", "error_kind")[:limit]
    )


@dataclass
class WorkerHealth:
    alive: bool
    last_seen: object
    queued_tasks: int


def worker_health(now=None):
    """A cluster is alive if its one-minute sweeper schedule ran recently: that works across
    machines with the ORM broker, where django-q2's own stats live in a per-process cache."""
    from django_q.models import OrmQ, Task

    from migrations_app.models import Attempt

    now = now or timezone.now()
    sweeper = (
        Task.objects.filter(func=SWEEPER).order_by("-stopped").values_list("stopped", flat=True)
    ).first()
    # A worker finishing a thread is a sign of life too (between two sweeper runs).
    worked = (
        Attempt.objects.filter(
            actor_label__startswith="worker", finished_at__gte=now - timedelta(minutes=3)
        )
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    last = max(filter(None, [sweeper, worked]), default=None)
    return WorkerHealth(
        alive=bool(last and last > now - timedelta(minutes=3)),
        last_seen=last,
        queued_tasks=OrmQ.objects.count(),
    )


@dataclass
class RequestRate:
    limit_per_minute: int
    last_minute: int
    total: int
    throttled: int


def request_rate():
    limiter = RateLimit.objects.filter(name="api").first()
    return RequestRate(
        limit_per_minute=settings.API_REQUESTS_PER_MINUTE,
        last_minute=limiter.requests_in_window() if limiter else 0,
        total=limiter.requests_total if limiter else 0,
        throttled=limiter.throttled_total if limiter else 0,
    )


def _closing(function):
    def run():
        try:
            return function()
        finally:
            connections.close_all()  # this thread's own connection

    return run


def figures():
    """Every figure at once. On PostgreSQL the three aggregates over the threads table run side
    by side on their own connections: each scans an index, and together they would cost their
    sum; apart, the slowest of them."""
    parts = {
        "counts": status_counts,
        "per_minute": migrated_per_minute,
        "failures": failure_groups,
    }
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            futures = {name: pool.submit(_closing(fn)) for name, fn in parts.items()}
            results = {name: future.result() for name, future in futures.items()}
    else:  # SQLite, or inside a transaction (tests): one connection sees it all
        results = {name: fn() for name, fn in parts.items()}
    results["health"] = worker_health()
    results["rate"] = request_rate()
    return results

"""The figures the dashboard shows, each a query over a handful of rows or an index."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from migrations_app import ratelimit, tallies
from migrations_app.models import RateLimit, ThreadStatus

SWEEPER = "migrations_app.tasks.sweep_stuck_threads"


@dataclass
class StatusCount:
    status: str
    label: str
    count: int


def status_counts() -> list[StatusCount]:
    """Threads per status: the tallies the database keeps (a handful of rows), not the table."""
    counts = tallies.status_counts()
    return [StatusCount(s.value, s.label, counts.get(s.value, 0)) for s in ThreadStatus]


def migrated_per_minute(now: datetime | None = None, minutes: int = 60) -> list[tuple]:
    """[(minute, count)] for the last hour, zeros included, oldest first: threads that became
    succeeded in each minute."""
    now = (now or timezone.now()).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=minutes - 1)
    rows = tallies.successes_since(start)
    return [(start + timedelta(minutes=i), rows.get(start + timedelta(minutes=i), 0))
            for i in range(minutes)]  # fmt: skip


def failure_groups(limit: int = 20) -> list[dict]:
    """Failed threads grouped by kind and message, biggest group first."""
    return tallies.failure_groups(limit)


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
    name: str
    limit_per_minute: int
    last_minute: int
    total: int
    throttled: int


BUDGETS = [
    (ratelimit.DESTINATION, "Destination (Conversations)", "API_REQUESTS_PER_MINUTE"),
    (ratelimit.SOURCE, "Source (Assistants)", "ASSISTANTS_REQUESTS_PER_MINUTE"),
]


def request_rates() -> list[RequestRate]:
    """Each request budget (destination, source) beside the requests of the current minute."""
    rows = {row.name: row for row in RateLimit.objects.filter(name__in=[b[0] for b in BUDGETS])}
    rates = []
    for name, label, setting in BUDGETS:
        row = rows.get(name)
        rates.append(
            RequestRate(
                name=label,
                limit_per_minute=getattr(settings, setting),
                last_minute=row.requests_in_window() if row else 0,
                total=row.requests_total if row else 0,
                throttled=row.throttled_total if row else 0,
            )
        )
    return rates


def request_rate() -> RequestRate:
    return request_rates()[0]


def figures() -> dict:
    """Every figure at once: each reads a handful of rows (see tallies.py)."""
    rates = request_rates()
    return {
        "counts": status_counts(),
        "per_minute": migrated_per_minute(),
        "failures": failure_groups(),
        "health": worker_health(),
        "rate": rates[0],
        "rates": rates,
    }

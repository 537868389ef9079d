"""The figures the dashboard shows, each a query over a handful of rows or an index."""

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import BooleanField, Count, ExpressionWrapper, Q, QuerySet
from django.utils import timezone

from migrations_app import ratelimit, tallies
from migrations_app.estimate import Estimate, SizeClass, estimate
from migrations_app.models import ErrorKind, RateLimit, Thread, ThreadStatus


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
    """Threads failed now, grouped by kind and message, biggest group first (from the
    tallies the database keeps). Only the status counts: a thread queued or running again (a
    retry) is no longer a failure."""
    groups = tallies.failure_groups(limit)
    labels = dict(ErrorKind.choices)
    for group in groups:
        group["kind_label"] = labels.get(group["error_kind"], group["error_kind"] or "unknown")
    return groups


RETRYING_COUNTED = 10_000  # above this the dashboard says "more than 10,000"


def threads_label(count: int, counted_up_to: int) -> str:
    """ "1 thread", "3 threads", "more than 10,000 threads" for a count capped one above."""
    if count > counted_up_to:
        return f"more than {counted_up_to:,} threads"
    return f"{count:,} thread{'' if count == 1 else 's'}"


def being_retried() -> int:
    """Threads staff asked to retry that are queued or running now, counted up to
    RETRYING_COUNTED + 1 in the partial index `thread_retrying_idx`: a retry of a million failed
    threads costs the dashboard no more than one of ten thousand."""
    return retrying_threads().values("pk")[: RETRYING_COUNTED + 1].count()


def retrying_threads() -> QuerySet[Thread]:
    return Thread.objects.filter(
        status__in=[ThreadStatus.QUEUED, ThreadStatus.RUNNING], requested_action="retry"
    ).order_by()


SAMPLE_ABOVE = 50_000  # threads left: above this, the dashboard's estimate reads a sample
SAMPLE_ROWS = 20_000  # about how many rows the sample reads


def remaining_sizes(threads: QuerySet | None = None) -> list[SizeClass]:
    """The threads not migrated yet (or `threads`), grouped by size. On the whole table, while
    few are left, one index-only scan of `thread_remaining_work_idx`."""
    if threads is None:
        threads = Thread.objects.exclude(status=ThreadStatus.SUCCEEDED)
    fetched = ExpressionWrapper(Q(fetched_at__isnull=False), output_field=BooleanField())
    rows = (
        threads.order_by()
        .annotate(fetched=fetched)
        .values_list("fetched", "message_count", "items_total")
        .annotate(n=Count("*"))  # not count(id): the index holds no id
    )
    return [_size(*row) for row in rows]


def _size(fetched: bool, messages: int, items: int, count: int) -> SizeClass:
    return SizeClass(count=count, messages=messages if fetched else None, items=items)


def sampled_remaining_sizes(percent: float) -> list[SizeClass]:
    """The sizes of the threads not migrated yet in a random `percent` of the table's pages
    (PostgreSQL's TABLESAMPLE SYSTEM): a few hundred pages read, whatever the table's size."""
    table = connection.ops.quote_name(Thread._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT fetched_at IS NOT NULL, message_count, items_total, count(*) "
            f"FROM {table} TABLESAMPLE SYSTEM (%s) WHERE status <> %s GROUP BY 1, 2, 3",
            [percent, ThreadStatus.SUCCEEDED.value],
        )
        return [_size(*row) for row in cursor.fetchall()]


def remaining_estimate(
    threads: QuerySet | None = None, counts: list[StatusCount] | None = None
) -> Estimate:
    """The estimate for `threads`, or for every thread not migrated yet. With the status
    `counts` (the dashboard has them) and many threads left on PostgreSQL, the sizes come from
    a sample of the table scaled to the exact number left: counting the sizes of millions of
    threads would cost the dashboard more than everything else it shows."""
    per_minute = settings.API_REQUESTS_PER_MINUTE
    if threads is None and counts is not None and connection.vendor == "postgresql":
        total = sum(c.count for c in counts)
        left = total - sum(c.count for c in counts if c.status == ThreadStatus.SUCCEEDED)
        if left > SAMPLE_ABOVE:
            percent = min(100.0, 100.0 * SAMPLE_ROWS / total)
            return estimate(sampled_remaining_sizes(percent), per_minute, threads=left)
    return estimate(remaining_sizes(threads), per_minute)


@dataclass
class WorkerHealth:
    alive: bool
    last_seen: object
    queued_tasks: int
    swept_at: object = None  # when the sweeper last finished
    sweep_late: bool = False  # it has not run for SWEEP_LATE: nothing resumes stuck threads


SWEEP_LATE = timedelta(minutes=3)


def worker_health(now: datetime | None = None) -> WorkerHealth:
    """A cluster is alive if a worker process swept recently (every worker process offers to run
    the one-minute sweeper) or finished a thread: that works across machines with the ORM
    broker, where django-q2's own stats live in a per-process cache."""
    from django_q.models import OrmQ

    from migrations_app.models import Attempt, Heartbeat

    now = now or timezone.now()
    swept = Heartbeat.objects.filter(name="sweep").values_list("last_finished", flat=True).first()
    worked = (
        Attempt.objects.filter(
            actor_label__startswith="worker", finished_at__gte=now - timedelta(minutes=3)
        )
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    last = max(filter(None, [swept, worked]), default=None)
    return WorkerHealth(
        alive=bool(last and last > now - timedelta(minutes=3)),
        last_seen=last,
        queued_tasks=OrmQ.objects.count(),
        swept_at=swept,
        sweep_late=not swept or swept < now - SWEEP_LATE,
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
    """Every figure at once: each reads a handful of rows (see tallies.py) or an index."""
    rates = request_rates()
    counts = status_counts()
    return {
        "counts": counts,
        "per_minute": migrated_per_minute(),
        "failures": failure_groups(),
        "health": worker_health(),
        "rate": rates[0],
        "rates": rates,
        "retrying": being_retried(),
        # After the counts: they say how many threads are left, and so whether to sample.
        "remaining": remaining_estimate(counts=counts),
    }


# --- what the page draws -------------------------------------------------------------------------
@dataclass
class Progress:
    """The share of threads migrated, failed and still to do, for a bar and its legend."""

    total: int
    succeeded: int
    failed: int

    @property
    def done_percent(self) -> float:
        return _percent(self.succeeded, self.total)

    @property
    def failed_percent(self) -> float:
        return _percent(self.failed, self.total)

    @property
    def todo_percent(self) -> float:
        return round(max(0.0, 100 - self.done_percent - self.failed_percent), 1)


def _percent(part: int, whole: int) -> float:
    if not whole:
        return 0.0
    value = 100 * part / whole
    # Never show 100 % (or 0 %) while one thread is left (or done).
    return math.floor(value * 10) / 10 if part < whole else 100.0


def progress(counts: list[StatusCount]) -> Progress:
    by_status = {c.status: c.count for c in counts}
    return Progress(
        total=sum(by_status.values()),
        succeeded=by_status.get(ThreadStatus.SUCCEEDED, 0),
        failed=by_status.get(ThreadStatus.FAILED, 0),
    )


@dataclass
class Bar:
    x: int
    y: float
    height: float
    minute: datetime
    count: int


@dataclass
class Chart:
    """Threads per minute as bars in a 0..(60 × BAR_WIDTH) by 0..100 box, with a round top of
    scale and time ticks every 15 minutes."""

    bars: list[Bar]
    scale_max: int
    peak: int
    total: int
    ticks: list[datetime] = field(default_factory=list)
    end: datetime | None = None

    BAR_WIDTH = 10
    TICK_EVERY = 15

    @property
    def width(self) -> int:
        return len(self.bars) * self.BAR_WIDTH

    @property
    def scale_half(self) -> float:
        half = self.scale_max / 2
        return int(half) if half == int(half) else half


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, … at or above `value`."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= value)


def chart(per_minute: list[tuple[datetime, int]]) -> Chart:
    peak = max((n for _, n in per_minute), default=0)
    scale = nice_ceiling(peak)
    bars = [
        Bar(
            x=i * Chart.BAR_WIDTH,
            y=100 - 100 * n / scale,
            height=100 * n / scale,
            minute=minute,
            count=n,
        )
        for i, (minute, n) in enumerate(per_minute)
    ]
    ticks = [minute for i, (minute, _) in enumerate(per_minute) if i % Chart.TICK_EVERY == 0]
    end = per_minute[-1][0] + timedelta(minutes=1) if per_minute else None
    return Chart(bars, scale, peak, sum(n for _, n in per_minute), ticks, end)

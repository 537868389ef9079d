"""How many API requests the threads left need, and how long that takes at the request budget.
Pure arithmetic: sizes in, an estimate out; no Django, no I/O.

Per thread, the upload needs one create (metadata only), one write per 20 items and one
verification read per 100 items (at least one). A thread not fetched yet first needs its source
reads: one retrieve, one messages page per 100 messages, one runs list, and one run-steps list per
run that can hold tool calls. What cannot be known before a fetch is estimated, and said to be:
a thread's size (the average of the fetched ones), its runs (one per two messages: one answer per
question, each assumed to carry tools), and its items (one per message, ignoring tool-call pairs
and skipped messages).
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass

from migrations_app.conversion import ITEMS_PER_VERIFY_PAGE, MAX_ITEMS_PER_CALL

MESSAGES_PER_PAGE = 100
RUNS_PER_MESSAGE = 0.5
DEFAULT_MESSAGES = 20  # an unfetched thread's size when no fetched thread says better


def _pages(count: float, size: float) -> int:
    return math.ceil(count / size)


@dataclass(frozen=True)
class SizeClass:
    """`count` threads of one size. `messages` is None for threads not fetched yet; `items` is
    the conversion's item count once an upload started (0 before)."""

    count: int
    messages: int | None
    items: int = 0


def upload_requests(items: float) -> int:
    """Create + writes of 20 + verification reads of 100 (at least one)."""
    return 1 + _pages(items, MAX_ITEMS_PER_CALL) + max(1, _pages(items, ITEMS_PER_VERIFY_PAGE))


def source_requests(messages: float) -> int:
    """Retrieve + messages pages + runs list + one run-steps list per run (estimated)."""
    runs = math.ceil(messages * RUNS_PER_MESSAGE)
    return 1 + max(1, _pages(messages, MESSAGES_PER_PAGE)) + 1 + runs


@dataclass(frozen=True)
class Estimate:
    threads: int
    requests: int
    source_requests: int  # part of `requests`: reading threads not fetched yet
    unfetched: int  # threads whose size is a guess
    per_minute: int

    @property
    def minutes(self) -> float:
        return self.requests / self.per_minute

    @property
    def hours(self) -> float:
        return self.minutes / 60

    def duration(self) -> str:
        if self.minutes < 1:
            return "under a minute"
        if self.hours < 1:
            return f"about {round(self.minutes)} minute{'s' if round(self.minutes) != 1 else ''}"
        return f"about {self.hours:,.1f} hours"

    def __str__(self) -> str:
        return (
            f"about {self.requests:,} request{'s' if self.requests != 1 else ''}, "
            f"{self.duration()} at {self.per_minute:,}/minute"
        )


def estimate(sizes: Iterable[SizeClass], per_minute: int, threads: int | None = None) -> Estimate:
    """The requests `sizes` need and the time they take at `per_minute` (the budget every worker
    shares: more workers do not make it shorter). With `threads`, `sizes` is a sample of that
    many threads: its counts are scaled up to it."""
    sizes = [size for size in sizes if size.count]
    sampled = sum(s.count for s in sizes)
    if threads is None:
        threads = sampled
    elif not sampled and threads:
        sizes, sampled = [SizeClass(threads, messages=None)], threads  # nothing known: guess
    scale = threads / sampled if sampled else 0
    fetched = [(s.count, s.messages) for s in sizes if s.messages is not None]
    known = sum(count for count, _ in fetched)
    average = (
        sum(count * messages for count, messages in fetched) / known if known else DEFAULT_MESSAGES
    )
    upload = source = unfetched = 0.0
    for size in sizes:
        weight = size.count * scale
        if size.messages is None:
            unfetched += weight
            source += weight * source_requests(average)
            upload += weight * upload_requests(average)
        else:
            upload += weight * upload_requests(size.items or size.messages)
    return Estimate(
        threads=threads,
        requests=round(upload + source),
        source_requests=round(source),
        unfetched=round(unfetched),
        per_minute=per_minute,
    )

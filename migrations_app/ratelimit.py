"""Requests-per-minute budgets shared by every worker on every machine, kept in the database.

Why the database and not a library bucket: the workers already share PostgreSQL and nothing else
(no Redis). Each budget is one row (GCRA): `theoretical_arrival` is the time from which the next
slot is free, and one atomic UPDATE … RETURNING moves it on.

Slots are timed by the database's clock, which every process shares: each UPDATE reads it
(`statement_timestamp()`) and the process converts the slots it took to its own monotonic clock
by the offset it just measured, so machines whose clocks disagree still never hold overlapping
slots. A thread that missed its slot (frozen after taking it) gives the slot up at send time
(`upload.Run.before_send`) rather than spend it late in a burst with the slots taken since.

One UPDATE per request was the engine's most frequent statement, so a process takes several
consecutive slots per UPDATE (as many as fit in `HORIZON` seconds of the budget, at most
`MAX_BATCH`) and hands them to its threads one by one, each at its own time: the requests still
leave evenly spaced, and no two processes ever hold the same slot, so the shared budget stays
exact across processes and machines. A slot nobody used in time is dropped (never sent late in a
burst) and given back to the request count. A 429 pushes the shared time forward and drops this
process's slots before it; every other process meets the new time at its next UPDATE, at most
`HORIZON` seconds later, and slows down too.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from django.conf import settings
from django.db import connection

from migrations_app.models import RateLimit

_GREATEST = {"postgresql": "GREATEST", "sqlite": "MAX"}
# The database's time in Unix seconds, one value for the whole statement.
_NOW = {
    "postgresql": "EXTRACT(EPOCH FROM statement_timestamp())::float8",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}
# The workers pace at 99 % of the configured budget: a server that counts over a rolling minute
# answers 429 to a request that leaves a few milliseconds late after one that left on time, and
# 1 % of a minute is room for such delays (the rate-cap benchmark measured 0.5-0.7 % 429s at
# exactly the budget, none with this room).
PACE = 0.99
HORIZON = 0.25  # seconds of the budget one UPDATE may take for this process
MAX_BATCH = 32
LATE = 0.25  # a slot this late is dropped rather than sent in a burst with the next ones

DESTINATION = "api"
SOURCE = "assistants"


class SharedRateLimiter:
    def __init__(
        self,
        name: str = DESTINATION,
        per_minute: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        shared_clock: Callable[[], float] | None = None,
    ) -> None:
        """`clock`: this process's clock, on which it hands its slots out. `shared_clock`: the
        clock all processes agree on, by default the database's (read in each UPDATE); a
        simulation passes its own."""
        self.name = name
        self.per_minute = per_minute or _budget(name)
        self.clock = clock
        self.shared_clock = shared_clock
        self._slots: deque[float] = deque()  # start times of the slots this process holds
        self._unused = 0  # slots dropped since the last UPDATE: taken off the request count
        self._taken_at = 0.0  # the clock when the slots were taken
        self._lock = threading.Lock()

    @property
    def interval(self) -> float:
        return 60.0 / self.per_minute

    @property
    def batch(self) -> int:
        return max(1, min(MAX_BATCH, int(HORIZON / self.interval)))

    def _move(self, assignment: str, params: list[float | int]) -> tuple[float, float]:
        """One UPDATE … RETURNING on the budget's row (created when missing): the row's
        `theoretical_arrival` after it and the shared clock's time it used (`{now}`), and the
        offset of the shared clock from this process's clock."""
        table = connection.ops.quote_name(RateLimit._meta.db_table)
        now = _NOW[connection.vendor] if self.shared_clock is None else repr(self.shared_clock())
        assignment = assignment.format(greatest=_GREATEST[connection.vendor], now=now)
        sql = (
            f"UPDATE {table} SET {assignment} WHERE name = %s RETURNING theoretical_arrival, {now}"
        )
        for _ in range(2):
            before = self.clock()
            with connection.cursor() as cursor:
                cursor.execute(sql, [*params, self.name])
                row = cursor.fetchone()
            if row is not None:
                arrival, shared_now = float(row[0]), float(row[1])
                return arrival, shared_now - (before + self.clock()) / 2
            RateLimit.objects.get_or_create(name=self.name)
        raise RuntimeError(f"rate limit row {self.name!r} could not be created")

    def reserve(self) -> float:
        """Take the next slot in the budget; returns how many seconds from now it starts (the
        caller waits that long before sending)."""
        with self._lock:
            now = self.clock()
            if now < self._taken_at:  # the clock went back: the slots' times mean nothing now
                self._unused += len(self._slots)
                self._slots.clear()
            while self._slots and self._slots[0] < now - LATE:
                self._slots.popleft()
                self._unused += 1
            if not self._slots:
                self._refill(now)
            return max(0.0, self._slots.popleft() - now)

    def _refill(self, now: float) -> None:
        count, unused = self.batch, self._unused
        used = count - unused
        arrival, offset = self._move(
            "theoretical_arrival = {greatest}(theoretical_arrival, {now}) + %s, "
            "requests_total = requests_total + %s, "
            "window_requests = CASE WHEN window_started > {now} - %s THEN window_requests + %s "
            "ELSE %s END, "
            "window_started = CASE WHEN window_started > {now} - %s THEN window_started "
            "ELSE {now} END",
            [count * self.interval, used, RateLimit.WINDOW_SECONDS, used, max(used, 0),
             RateLimit.WINDOW_SECONDS],
        )  # fmt: skip
        self._unused, self._taken_at = 0, now
        # Strict spacing, no burst allowance: a burst after a pause would overshoot a server
        # that counts over a rolling minute. Shared times become this process's by the offset.
        first = arrival - offset - count * self.interval
        self._slots.extend(first + index * self.interval for index in range(count))

    def slow_down(self, seconds: float) -> None:
        """The server said 429: nobody sends before `seconds` from now."""
        with self._lock:
            until = self.clock() + seconds
            while self._slots and self._slots[0] < until:
                self._slots.popleft()
                self._unused += 1
            self._move(
                "theoretical_arrival = {greatest}(theoretical_arrival, {now} + %s), "
                "throttled_total = throttled_total + 1",
                [seconds],
            )


def _budget(name: str) -> float:
    """The rate the workers keep to: PACE of the configured budget."""
    if name == SOURCE:
        return settings.ASSISTANTS_REQUESTS_PER_MINUTE * PACE
    return settings.API_REQUESTS_PER_MINUTE * PACE


_shared: dict[tuple[str, float], SharedRateLimiter] = {}
_shared_lock = threading.Lock()


def shared(name: str = DESTINATION) -> SharedRateLimiter:
    """This process's limiter for a budget: one per process, so its threads share the slots
    one UPDATE takes."""
    key = (name, _budget(name))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = SharedRateLimiter(name, key[1])
        return _shared[key]

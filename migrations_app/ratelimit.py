"""A requests-per-minute budget shared by every worker, kept in the database.

Why the database and not a library bucket: the workers already share PostgreSQL and nothing else
(no Redis), and GCRA needs one number per limiter, moved by one atomic UPDATE … RETURNING per
request. Each worker learns when its request may go and sleeps until then, so the combined rate
stays at the budget instead of bouncing off 429s; a 429 pushes the shared time forward, so every
worker slows down as the server asks.
"""

import time

from django.conf import settings
from django.db import connection, transaction

from migrations_app.models import RateLimit

_GREATEST = {"postgresql": "GREATEST", "sqlite": "MAX"}


class SharedRateLimiter:
    def __init__(self, name="api", per_minute=None, *, sleeper=time.sleep, clock=time.time):
        self.name = name
        self.per_minute = per_minute or settings.API_REQUESTS_PER_MINUTE
        self.sleeper = sleeper
        self.clock = clock
        self._ready = False

    @property
    def interval(self):
        return 60.0 / self.per_minute

    def _ensure_row(self):
        if not self._ready:
            RateLimit.objects.get_or_create(name=self.name)
            self._ready = True

    def _move(self, assignment, params):
        self._ensure_row()
        table = connection.ops.quote_name(RateLimit._meta.db_table)
        greatest = _GREATEST[connection.vendor]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET {assignment.format(greatest=greatest)} "
                "WHERE name = %s RETURNING theoretical_arrival",
                [*params, self.name],
            )
            return cursor.fetchone()[0]

    def acquire(self):
        """Wait until one more request fits in the budget; returns the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self.sleeper(wait)
        return wait

    def reserve(self):
        """Take the next slot in the budget; returns how many seconds from now it starts (the
        caller waits that long before sending)."""
        now = self.clock()
        window_open = now - RateLimit.WINDOW_SECONDS
        arrival = self._move(
            "theoretical_arrival = {greatest}(theoretical_arrival, %s) + %s, "
            "requests_total = requests_total + 1, "
            "window_requests = CASE WHEN window_started > %s THEN window_requests + 1 ELSE 1 END, "
            "window_started = CASE WHEN window_started > %s THEN window_started ELSE %s END",
            [now, self.interval, window_open, window_open, now],
        )
        # Strict spacing, no burst allowance: a burst after a pause would overshoot a server
        # that counts over a rolling minute.
        return max(0.0, arrival - self.interval - now)

    def slow_down(self, seconds):
        """The server said 429: nobody sends before `seconds` from now."""
        self._move(
            "theoretical_arrival = {greatest}(theoretical_arrival, %s), "
            "throttled_total = throttled_total + 1",
            [self.clock() + seconds],
        )

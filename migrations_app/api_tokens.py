"""Applications' tokens for the lookup API: created once (only a hash is kept), revoked, and each
held to its own rate limit across every web process.

The rate limit mirrors the workers' request budget (ratelimit.py): each token's budget is one
row in the database (GCRA: `theoretical_arrival` is the time from which its next request is
within the rate), because the web processes, on one machine or several, share PostgreSQL and
nothing else (no Redis; Django's default cache is each process's own memory, where a limit would
be multiplied by the number of processes). One UPDATE … RETURNING both checks the token (known,
not revoked) and takes a few of its requests at once, as many as its rate allows in a quarter
of a second (`HORIZON`, at most `MAX_BATCH`); the process then admits that many requests without
going to the database. Requests a process took but did not use in time are given back at its
next UPDATE, so a token close to its rate is not refused for its own unused share.

The last-used time is written by that same UPDATE: it costs no write of its own, and the
UPDATEs themselves are at most one per token, process and quarter of a second, however many
requests arrive. A token keeps working for at most that quarter of a second after it is revoked
(in a process that still holds requests it took); every later request is refused.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection
from django.db.models.functions import Now
from django.utils import timezone

from migrations_app.models import ApiToken

if TYPE_CHECKING:
    from django.contrib.auth.models import User

TOKEN_PREFIX = "mcl_"  # "migration console lookup": a secret scanner can recognise one
SHOWN_PREFIX = 12  # characters of the token kept in clear, to tell tokens apart on screen
HORIZON = 0.25  # seconds of a token's rate one UPDATE may take for this process
MAX_BATCH = 32
BURST_SECONDS = 10  # a token may send up to this many seconds of its rate at once
# Unix times are large floats: (now + tolerance - base) / interval can come out a hair under a
# whole number of requests (a few millionths at a 0.1 s interval), and flooring it would lose
# one: a thousandth of a request is added first.
ROUNDING = 1e-3

_GREATEST = {"postgresql": "GREATEST", "sqlite": "MAX"}
_LEAST = {"postgresql": "LEAST", "sqlite": "MIN"}
# PostgreSQL rounds a float cast to an integer; the values floored here are never negative,
# where SQLite's cast (which truncates) floors them too.
_FLOOR = {"postgresql": "FLOOR({})", "sqlite": "CAST({} AS INTEGER)"}


def hash_token(raw: str) -> str:
    """A token is 256 random bits: one SHA-256 is enough to keep it unreadable in the database
    (a slow password hash protects guessable secrets, which these are not)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(
    application: str,
    *,
    user: User | None = None,
    prioritize_on_lookup: bool = False,
    requests_per_minute: int | None = None,
) -> tuple[ApiToken, str]:
    """A new token for `application`: (its row, the token itself, to show once)."""
    application = application.strip()
    if not application:
        raise ValueError("An application name is required.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        application=application[:100],
        prefix=raw[:SHOWN_PREFIX],
        key_hash=hash_token(raw),
        prioritize_on_lookup=prioritize_on_lookup,
        requests_per_minute=requests_per_minute or settings.API_TOKEN_REQUESTS_PER_MINUTE,
        created_by=user,
    )
    return token, raw


def revoke(token_pk: int, user: User | None = None) -> bool:
    """Revoke a token (its row stays, for the record); False if it already was."""
    return bool(
        ApiToken.objects.filter(pk=token_pk, revoked_at=None).update(
            revoked_at=Now(), revoked_by=user
        )
    )


# --- admission: who is calling, and within their rate? -------------------------------------------
@dataclass(frozen=True)
class Caller:
    token_pk: int
    application: str
    prioritize_on_lookup: bool


class Refused(Exception):
    """No such token, or it was revoked."""


class Throttled(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limit: retry after {retry_after:.1f} s")
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))


@dataclass
class _Held:
    caller: Caller
    left: int  # requests taken and not used yet
    until: float  # the clock after which they are given back instead


def _claim_sql(vendor: str) -> str:
    greatest, least, floor = _GREATEST[vendor], _LEAST[vendor], _FLOOR[vendor]
    rate = "(requests_per_minute * 1.0)"  # a float: an integer product could overflow
    interval = f"(60.0 / {rate})"
    base = f"{greatest}(theoretical_arrival - %(unused)s * {interval}, %(now)s)"
    tolerance = f"({greatest}(1.0, {rate} * {BURST_SECONDS} / 60.0) - 1) * {interval}"
    room = (
        f"(CASE WHEN {base} > %(now)s + {tolerance} THEN 0 "
        f"ELSE {floor.format(f'(%(now)s + {tolerance} - {base}) / {interval} + {ROUNDING}')} + 1 "
        "END)"
    )
    per_horizon = floor.format(f"{rate} * {HORIZON} / 60.0")
    wanted = f"{least}({MAX_BATCH}, {greatest}(1, {per_horizon}))"
    grant = f"{least}({wanted}, {room})"
    table = connection.ops.quote_name(ApiToken._meta.db_table)
    return (
        f"UPDATE {table} SET last_grant = {grant}, "
        f"theoretical_arrival = {base} + {grant} * {interval}, "
        f"last_used_at = CASE WHEN {grant} > 0 THEN %(when)s ELSE last_used_at END "
        "WHERE key_hash = %(hash)s AND revoked_at IS NULL "
        "RETURNING id, application, prioritize_on_lookup, last_grant, theoretical_arrival, "
        "requests_per_minute"
    )


class TokenGate:
    """This process's door to the API: which token is calling, and whether its rate allows one
    more request now. Thread-safe; one per process (`gate()`)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()

    def admit(self, raw: str) -> Caller:
        """The caller, with one request of its budget taken; raises Refused or Throttled."""
        key_hash = hash_token(raw)
        with self._lock:
            now = self.clock()
            held = self._held.get(key_hash)
            if held is not None and held.left > 0 and now < held.until:
                held.left -= 1
                return held.caller
            unused = held.left if held is not None else 0
            self._held.pop(key_hash, None)
            row = self._claim(key_hash, now, unused)
            if row is None:
                raise Refused
            pk, application, prioritize, granted, arrival, per_minute = row
            if not granted:
                interval = 60.0 / per_minute
                tolerance = (max(1.0, per_minute * BURST_SECONDS / 60) - 1) * interval
                raise Throttled(arrival - tolerance - now)
            caller = Caller(pk, application, bool(prioritize))
            self._held[key_hash] = _Held(caller, int(granted) - 1, now + HORIZON)
            return caller

    def _claim(self, key_hash: str, now: float, unused: int) -> tuple | None:
        params: dict[str, Any] = {
            "now": now,
            "unused": unused,
            "hash": key_hash,
            "when": timezone.now(),
        }
        with connection.cursor() as cursor:
            cursor.execute(_claim_sql(connection.vendor), params)
            return cursor.fetchone()

    def forget(self) -> None:
        """Drop what this process holds (tests)."""
        with self._lock:
            self._held.clear()


_gate: TokenGate | None = None
_gate_lock = threading.Lock()


def gate() -> TokenGate:
    global _gate
    with _gate_lock:
        if _gate is None:
            _gate = TokenGate()
        return _gate

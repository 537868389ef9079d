"""Coverage: does what staff registered, what the exports hold and what was migrated add up?

Three sets of threads are compared, for the whole migration and for each import batch:

- **your list**: ids registered from an id list staff gave (a CSV, pasted ids: the ids their
  application's database knows), `Thread.listed`;
- **the exports**: threads an export holds (`Thread.export_state` whole or with errors); a
  thread an export names but could not read (`unread`) is in no export;
- **migrated and verified**: threads that succeeded (a success is a verified conversation).

The differences staff act on, each a list of threads and a CSV (`DIFFERENCES`): in your list but
in no export, exported but not in your list, exported with errors (the exporter's own errors, or
it could not read the thread at all), migrated and verified.

The whole migration's figures come from `CoverageTally`, delta rows that triggers on the thread
table keep in the changing statement's transaction, as tallies.py keeps the dashboard's: the
dashboard reads a handful of rows at any number of threads. A batch's figures are two aggregates
over its own threads (the ones it registered, and `BatchMember` rows for the ones registered
before it).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.expressions import RawSQL

from migrations_app.mapping import PseudoBuffer
from migrations_app.models import ExportState, ImportBatch, Thread, ThreadStatus
from migrations_app.tallies import THREAD, ThreadTriggers

TALLY = "migrations_app_coveragetally"
MEMBER = "migrations_app_batchmember"

HELD = [ExportState.WHOLE, ExportState.ERRORS]  # an export holds the thread
WITH_ERRORS = [ExportState.ERRORS, ExportState.UNREAD]


@dataclass(frozen=True)
class Difference:
    kind: str  # the threads list's `coverage` parameter
    label: str
    help: str
    condition: Q


DIFFERENCES = [
    Difference(
        "unexported",
        "In your list but in no export",
        "registered from an id list; no export holds them (they can still be fetched from a "
        "source, or loaded from another export)",
        Q(listed=True) & ~Q(export_state__in=HELD),
    ),
    Difference(
        "unlisted",
        "Exported but not in your list",
        "an export holds them; no id list you imported names them",
        Q(listed=False, export_state__in=HELD),
    ),
    Difference(
        "export_errors",
        "Exported with errors",
        "the exporter reported errors about them (steps or files missing), or could not read "
        "them at all",
        Q(export_state__in=WITH_ERRORS),
    ),
    Difference(
        "verified",
        "Migrated and verified",
        "their conversation was read back and matches",
        Q(status=ThreadStatus.SUCCEEDED),
    ),
]
BY_KIND = {difference.kind: difference for difference in DIFFERENCES}


# --- the figures --------------------------------------------------------------------------------
@dataclass
class Coverage:
    """Threads counted by (listed, export state, succeeded), and what follows from them."""

    counts: dict[tuple[bool, str, bool], int] = field(default_factory=dict)

    def _sum(self, keep: Callable[[bool, str, bool], bool]) -> int:
        return sum(n for key, n in self.counts.items() if keep(*key))

    @property
    def registered(self) -> int:
        return self._sum(lambda listed, state, done: True)

    @property
    def listed(self) -> int:
        return self._sum(lambda listed, state, done: listed)

    @property
    def exported(self) -> int:
        return self._sum(lambda listed, state, done: state in HELD)

    @property
    def listed_and_exported(self) -> int:
        return self._sum(lambda listed, state, done: listed and state in HELD)

    @property
    def unread(self) -> int:
        return self._sum(lambda listed, state, done: state == ExportState.UNREAD)

    @property
    def exported_with_errors(self) -> int:
        return self._sum(lambda listed, state, done: state == ExportState.ERRORS)

    @property
    def verified(self) -> int:
        return self._sum(lambda listed, state, done: done)

    @property
    def in_neither(self) -> int:
        """Registered by neither an id list nor an export holding them: named only by an export
        that could not read them, or registered another way (a fetch, a test)."""
        return self._sum(lambda listed, state, done: not listed and state not in HELD)

    def count(self, kind: str) -> int:
        return {
            "unexported": self.listed - self.listed_and_exported,
            "unlisted": self.exported - self.listed_and_exported,
            "export_errors": self.exported_with_errors + self.unread,
            "verified": self.verified,
        }[kind]

    @property
    def count_unexported(self) -> int:
        return self.count("unexported")

    @property
    def count_unlisted(self) -> int:
        return self.count("unlisted")

    @property
    def count_export_errors(self) -> int:
        return self.count("export_errors")

    @property
    def differences(self) -> list[tuple[Difference, int]]:
        return [(difference, self.count(difference.kind)) for difference in DIFFERENCES]


def _key(listed: bool, state: str, succeeded: bool) -> tuple[bool, str, bool]:
    return bool(listed), state or "", bool(succeeded)


def for_migration() -> Coverage:
    """Every thread, from the tally (a handful of rows, whatever the number of threads)."""
    from migrations_app.models import CoverageTally

    rows = (
        CoverageTally.objects.order_by()
        .values_list("listed", "export_state", "succeeded")
        .annotate(n=Sum("count"))
    )
    coverage = Coverage()
    for listed, state, succeeded, n in rows:
        if n:
            key = _key(listed, state, succeeded)
            coverage.counts[key] = coverage.counts.get(key, 0) + n
    return coverage


def _grouped(threads: QuerySet[Thread], coverage: Coverage) -> None:
    succeeded = Q(status=ThreadStatus.SUCCEEDED)
    rows = (
        threads.order_by()
        .values_list("listed", "export_state")
        .annotate(done=Count("pk", filter=succeeded), n=Count("pk"))
    )
    for listed, state, done, n in rows:
        for is_done, count in ((True, done), (False, n - done)):
            if count:
                key = _key(listed, state, is_done)
                coverage.counts[key] = coverage.counts.get(key, 0) + count


def for_batch(batch: ImportBatch) -> Coverage:
    """The threads `batch` named: those it registered and those registered before it. Two
    grouped aggregates, each driven by an index on the batch."""
    coverage = Coverage()
    _grouped(Thread.objects.filter(import_batch=batch), coverage)
    _grouped(
        Thread.objects.filter(batch_members__batch=batch).exclude(import_batch=batch), coverage
    )
    return coverage


# --- the threads behind a figure ----------------------------------------------------------------
def named_by(batch_pk: int) -> Q:
    """Threads the batch registered or named (see BatchMember)."""
    table = connection.ops.quote_name(THREAD)
    member = connection.ops.quote_name(MEMBER)
    return Q(
        pk__in=RawSQL(
            f"SELECT id FROM {table} WHERE import_batch_id = %s "
            f"UNION SELECT thread_id FROM {member} WHERE batch_id = %s",
            [batch_pk, batch_pk],
        )
    )


def threads(kind: str, batch: ImportBatch | None = None) -> QuerySet[Thread]:
    queryset = Thread.objects.filter(BY_KIND[kind].condition)
    if batch is not None:
        queryset = queryset.filter(named_by(batch.pk))
    return queryset


CSV_HEADER = [
    "thread_id",
    "status",
    "in_your_list",
    "exports",
    "error_kind",
    "error",
    "conversation_id",
]


def csv_lines(queryset: QuerySet[Thread]) -> Iterator[str]:
    """The threads of a difference as CSV lines, header first, streamed from the database."""
    writer = csv.writer(PseudoBuffer(), lineterminator="\n")
    yield writer.writerow(CSV_HEADER)
    rows = queryset.order_by("pk").values_list(
        "thread_id",
        "status",
        "listed",
        "export_state",
        "error_kind",
        "error_message",
        "conversation_id",
    )
    for thread_id, status, listed, state, kind, error, conversation in rows.iterator(5000):
        yield writer.writerow(
            [
                thread_id,
                status,
                "yes" if listed else "no",
                state or "none",
                kind,
                " ".join(error.split())[:500],
                conversation,
            ]
        )


# --- the tally and its triggers -----------------------------------------------------------------
_SUCCEEDED = "{row}.status = 'succeeded'"
_PG_CHANGED = (
    "(o.listed <> w.listed OR o.export_state <> w.export_state "
    "OR (o.status = 'succeeded') <> (w.status = 'succeeded'))"
)
_PG_JOINED = "old_rows o JOIN new_rows w ON w.id = o.id"
_PG_INSERT = (
    f"INSERT INTO {TALLY} (listed, export_state, succeeded, count) "
    "SELECT listed, export_state, succeeded, sum(n) FROM ({rows}) d "
    "GROUP BY 1, 2, 3 HAVING sum(n) <> 0;"
)
_PG_BODIES = {
    "insert": _PG_INSERT.format(
        rows="SELECT listed, export_state, status = 'succeeded' AS succeeded, 1 AS n FROM new_rows"
    ),
    "delete": _PG_INSERT.format(
        rows="SELECT listed, export_state, status = 'succeeded' AS succeeded, -1 AS n FROM old_rows"
    ),
    # Most updates (progress, leases) change none of the three: one join finds that out.
    "update": f"IF NOT EXISTS (SELECT 1 FROM {_PG_JOINED} WHERE {_PG_CHANGED}) THEN "
    "RETURN NULL; END IF; "
    + _PG_INSERT.format(
        rows="SELECT o.listed, o.export_state, o.status = 'succeeded' AS succeeded, -1 AS n "
        f"FROM {_PG_JOINED} WHERE {_PG_CHANGED} UNION ALL "
        "SELECT w.listed, w.export_state, w.status = 'succeeded', 1 "
        f"FROM {_PG_JOINED} WHERE {_PG_CHANGED}"
    ),
}
_SQLITE_ROW = "{row}.listed, {row}.export_state, {row}.status = 'succeeded'"
_SQLITE = {
    "insert": f"""
        CREATE TRIGGER IF NOT EXISTS thread_coverage_insert AFTER INSERT ON {THREAD} BEGIN
            INSERT INTO {TALLY} (listed, export_state, succeeded, count)
                VALUES ({_SQLITE_ROW.format(row="NEW")}, 1);
        END""",
    "update": f"""
        CREATE TRIGGER IF NOT EXISTS thread_coverage_update
        AFTER UPDATE OF status, listed, export_state ON {THREAD}
        WHEN OLD.listed <> NEW.listed OR OLD.export_state <> NEW.export_state
            OR (OLD.status = 'succeeded') <> (NEW.status = 'succeeded')
        BEGIN
            INSERT INTO {TALLY} (listed, export_state, succeeded, count)
                VALUES ({_SQLITE_ROW.format(row="OLD")}, -1),
                       ({_SQLITE_ROW.format(row="NEW")}, 1);
        END""",
    "delete": f"""
        CREATE TRIGGER IF NOT EXISTS thread_coverage_delete AFTER DELETE ON {THREAD} BEGIN
            INSERT INTO {TALLY} (listed, export_state, succeeded, count)
                VALUES ({_SQLITE_ROW.format(row="OLD")}, -1);
        END""",
}


def _recount(cursor: Any, db: BaseDatabaseWrapper) -> None:
    cursor.execute(f"DELETE FROM {TALLY}")
    cursor.execute(
        f"INSERT INTO {TALLY} (listed, export_state, succeeded, count) "
        f"SELECT listed, export_state, status = 'succeeded', count(*) FROM {THREAD} "
        "GROUP BY 1, 2, 3"
    )


COVERAGE_TRIGGERS = ThreadTriggers("thread_coverage", _PG_BODIES, _SQLITE, _recount)
installed = COVERAGE_TRIGGERS.installed
install = COVERAGE_TRIGGERS.install
drop = COVERAGE_TRIGGERS.drop
TRIGGERS = COVERAGE_TRIGGERS.names


def on_post_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """After every migrate: triggers a table rebuild dropped (SQLite) are put back."""
    from django.db import connections

    install(connections[using])


def compact() -> None:
    """Fold the delta rows into one row per key (the sweeper runs it every minute). Exact under
    concurrent writers, as tallies.compact."""
    if connection.vendor == "postgresql":
        columns = "listed, export_state, succeeded"
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH moved AS (DELETE FROM {TALLY} RETURNING {columns}, count) "
                f"INSERT INTO {TALLY} ({columns}, count) SELECT {columns}, sum(count) "
                f"FROM moved GROUP BY {columns} HAVING sum(count) <> 0"
            )
        return
    from migrations_app.models import CoverageTally

    with transaction.atomic():
        keys = ["listed", "export_state", "succeeded"]
        rows = list(CoverageTally.objects.order_by().values(*keys).annotate(total=Sum("count")))
        CoverageTally.objects.all().delete()
        CoverageTally.objects.bulk_create(
            CoverageTally(**{key: row[key] for key in keys}, count=row["total"])
            for row in rows
            if row["total"]
        )


def kinds() -> Iterable[str]:
    return BY_KIND.keys()

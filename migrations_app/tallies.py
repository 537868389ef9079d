"""The dashboard's counters, kept by the database where a thread's state changes.

Threads change state in many places: the state machine (`states`), intake's bulk SQL (ids by the
hundred thousand, exports), staff deleting rows. So the counters are kept by triggers on the
thread table, in the transaction of the statement that changed the rows, whoever ran it:

- `StatusTally`: threads per status;
- `FailureTally`: failed threads per (error kind, error template), the "failures by reason" (the
  template is the message with its ids and numbers taken out: `reasons.py`);
- `SuccessTally`: threads that became succeeded, per minute of their update (the chart).

Each trigger appends *delta* rows (+n / −n) and never updates a shared row, so concurrent workers
never wait for each other's counter locks and can never deadlock on them; the figures are the
sums of the rows. `compact()` (run by the minute's sweeper) folds the deltas into one row per
key, so the dashboard reads a handful of rows whatever the number of threads.

PostgreSQL: statement-level triggers with transition tables (a bulk insert of 100,000 ids adds
one row per status, not 100,000). SQLite (the demo): row-level triggers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Sum
from django.utils import timezone

THREAD = "migrations_app_thread"
STATUS = "migrations_app_statustally"
FAILURE = "migrations_app_failuretally"
SUCCESS = "migrations_app_successtally"
SUCCESS_KEPT = timedelta(hours=2)  # the chart shows the last hour

# --- PostgreSQL: one function per event, each over the statement's transition tables ----------
_PG_DELTAS = f"""
    INSERT INTO {STATUS} (status, count)
        SELECT status, sum(n) FROM ({{status}}) d GROUP BY status HAVING sum(n) <> 0;
    INSERT INTO {FAILURE} (error_kind, error_template, count)
        SELECT error_kind, error_template, sum(n) FROM ({{failure}}) d
        GROUP BY error_kind, error_template HAVING sum(n) <> 0;
    INSERT INTO {SUCCESS} (minute, count)
        SELECT date_trunc('minute', updated_at), count(*) FROM ({{success}}) d
        GROUP BY 1;
"""
_PG_JOINED = "old_rows o JOIN new_rows w ON w.id = o.id"
_PG_CHANGED = (
    "(o.status <> w.status OR o.error_kind <> w.error_kind OR o.error_template <> w.error_template)"
)
_PG_BODIES = {
    "insert": _PG_DELTAS.format(
        status="SELECT status, 1 AS n FROM new_rows",
        failure="SELECT error_kind, error_template, 1 AS n FROM new_rows WHERE status = 'failed'",
        success="SELECT updated_at FROM new_rows WHERE status = 'succeeded'",
    ),
    "delete": _PG_DELTAS.format(
        status="SELECT status, -1 AS n FROM old_rows",
        failure="SELECT error_kind, error_template, -1 AS n FROM old_rows WHERE status = 'failed'",
        success="SELECT updated_at FROM old_rows WHERE false",
    ),
    # Most updates (progress, lease) change none of the three: one join finds that out.
    "update": f"IF NOT EXISTS (SELECT 1 FROM {_PG_JOINED} WHERE {_PG_CHANGED}) THEN "
    "RETURN NULL; END IF;"
    + _PG_DELTAS.format(
        status=f"SELECT o.status, -1 AS n FROM {_PG_JOINED} WHERE o.status <> w.status "
        f"UNION ALL SELECT w.status, 1 FROM {_PG_JOINED} WHERE o.status <> w.status",
        failure=f"SELECT o.error_kind, o.error_template, -1 AS n FROM {_PG_JOINED} "
        f"WHERE o.status = 'failed' AND {_PG_CHANGED} UNION ALL "
        f"SELECT w.error_kind, w.error_template, 1 FROM {_PG_JOINED} "
        f"WHERE w.status = 'failed' AND {_PG_CHANGED}",
        success=f"SELECT w.updated_at FROM {_PG_JOINED} "
        "WHERE w.status = 'succeeded' AND o.status <> 'succeeded'",
    ),
}
# --- SQLite: row triggers ------------------------------------------------------------------------
_MINUTE = "strftime('%Y-%m-%d %H:%M:00', {row}.updated_at)"
_SQLITE = {
    "insert": f"""
        CREATE TRIGGER IF NOT EXISTS thread_tally_insert AFTER INSERT ON {THREAD} BEGIN
            INSERT INTO {STATUS} (status, count) VALUES (NEW.status, 1);
            INSERT INTO {FAILURE} (error_kind, error_template, count)
                SELECT NEW.error_kind, NEW.error_template, 1 WHERE NEW.status = 'failed';
            INSERT INTO {SUCCESS} (minute, count)
                SELECT {_MINUTE.format(row="NEW")}, 1 WHERE NEW.status = 'succeeded';
        END""",
    "update": f"""
        CREATE TRIGGER IF NOT EXISTS thread_tally_update
        AFTER UPDATE OF status, error_kind, error_template ON {THREAD}
        WHEN OLD.status <> NEW.status OR OLD.error_kind <> NEW.error_kind
            OR OLD.error_template <> NEW.error_template
        BEGIN
            INSERT INTO {STATUS} (status, count)
                SELECT OLD.status, -1 WHERE OLD.status <> NEW.status
                UNION ALL SELECT NEW.status, 1 WHERE OLD.status <> NEW.status;
            INSERT INTO {FAILURE} (error_kind, error_template, count)
                SELECT OLD.error_kind, OLD.error_template, -1 WHERE OLD.status = 'failed'
                UNION ALL
                SELECT NEW.error_kind, NEW.error_template, 1 WHERE NEW.status = 'failed';
            INSERT INTO {SUCCESS} (minute, count)
                SELECT {_MINUTE.format(row="NEW")}, 1
                WHERE NEW.status = 'succeeded' AND OLD.status <> 'succeeded';
        END""",
    "delete": f"""
        CREATE TRIGGER IF NOT EXISTS thread_tally_delete AFTER DELETE ON {THREAD} BEGIN
            INSERT INTO {STATUS} (status, count) VALUES (OLD.status, -1);
            INSERT INTO {FAILURE} (error_kind, error_template, count)
                SELECT OLD.error_kind, OLD.error_template, -1 WHERE OLD.status = 'failed';
        END""",
}


# --- installing, checking, rebuilding ------------------------------------------------------------
def _recount(cursor: Any, db: BaseDatabaseWrapper) -> None:
    for table in (STATUS, FAILURE, SUCCESS):
        cursor.execute(f"DELETE FROM {table}")
    cursor.execute(
        f"INSERT INTO {STATUS} (status, count) SELECT status, count(*) FROM {THREAD} "
        "GROUP BY status"
    )
    cursor.execute(
        f"INSERT INTO {FAILURE} (error_kind, error_template, count) "
        f"SELECT error_kind, error_template, count(*) FROM {THREAD} WHERE status = 'failed' "
        "GROUP BY error_kind, error_template"
    )
    minute = (
        "date_trunc('minute', updated_at)"
        if db.vendor == "postgresql"
        # %% : this statement has parameters, and Django formats it with them when DEBUG logs it
        else _MINUTE.format(row=THREAD).replace("%", "%%")
    )
    cursor.execute(
        f"INSERT INTO {SUCCESS} (minute, count) SELECT {minute}, count(*) FROM {THREAD} "
        "WHERE status = 'succeeded' AND updated_at >= %s GROUP BY 1",
        [timezone.now() - SUCCESS_KEPT],
    )


class ThreadTriggers:
    """A set of triggers on the thread table (insert, update, delete) that keep a tally, as this
    module and coverage.py do: checked, installed with a recount in one transaction (the thread
    table locked against writes), dropped."""

    REFERENCING = {
        "insert": "NEW TABLE AS new_rows",
        "delete": "OLD TABLE AS old_rows",
        "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    }

    def __init__(
        self,
        prefix: str,
        postgresql_bodies: dict[str, str],
        sqlite_statements: dict[str, str],
        recount: Callable[[Any, BaseDatabaseWrapper], None],
    ) -> None:
        self.prefix = prefix
        self.postgresql_bodies = postgresql_bodies
        self.sqlite_statements = sqlite_statements
        self.recount = recount
        self.names = tuple(f"{prefix}_{event}" for event in ("insert", "update", "delete"))

    def installed(self, db: BaseDatabaseWrapper = connection) -> bool:
        with db.cursor() as cursor:
            if db.vendor == "postgresql":
                cursor.execute(
                    "SELECT count(*) FROM pg_trigger "
                    "WHERE tgrelid = %s::regclass AND tgname = ANY(%s)",
                    [THREAD, list(self.names)],
                )
            else:
                cursor.execute(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s "
                    "AND name IN (%s, %s, %s)",
                    [THREAD, *self.names],
                )
            return cursor.fetchone()[0] == len(self.names)

    def install(self, db: BaseDatabaseWrapper = connection, *, force: bool = False) -> bool:
        """Create the triggers if any is missing (or `force`), and count every thread again in
        the same transaction, with the thread table locked against writes. True if it did."""
        if db.vendor not in ("postgresql", "sqlite") or (self.installed(db) and not force):
            return False
        with transaction.atomic(using=db.alias), db.cursor() as cursor:
            if db.vendor == "postgresql":
                cursor.execute(f"LOCK TABLE {THREAD} IN SHARE ROW EXCLUSIVE MODE")
                self._create_postgresql(cursor)
            else:
                for name in self.names:  # replaced, not kept: an older body may count otherwise
                    cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
                for sql in self.sqlite_statements.values():
                    cursor.execute(sql)
            self.recount(cursor, db)
        return True

    def _create_postgresql(self, cursor: Any) -> None:
        for event, body in self.postgresql_bodies.items():
            name = f"{self.prefix}_{event}"
            cursor.execute(
                f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger "
                f"LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$"
            )
            cursor.execute(
                f"CREATE OR REPLACE TRIGGER {name} AFTER {event.upper()} ON {THREAD} "
                f"REFERENCING {self.REFERENCING[event]} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION {name}()"
            )

    def drop(self, db: BaseDatabaseWrapper = connection) -> None:
        with db.cursor() as cursor:
            for name in self.names:
                cursor.execute(
                    f"DROP TRIGGER IF EXISTS {name} ON {THREAD}"
                    if db.vendor == "postgresql"
                    else f"DROP TRIGGER IF EXISTS {name}"
                )


TALLY_TRIGGERS = ThreadTriggers("thread_tally", _PG_BODIES, _SQLITE, _recount)
installed = TALLY_TRIGGERS.installed
install = TALLY_TRIGGERS.install
TRIGGERS = TALLY_TRIGGERS.names


def on_post_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """After every migrate: triggers a table rebuild dropped (SQLite remakes a table to alter
    it) are put back, and the counts taken again."""
    from django.db import connections

    install(connections[using])


# --- folding the deltas --------------------------------------------------------------------------
def compact() -> None:
    """Fold each tally's delta rows into one row per key (zero rows dropped; chart minutes older
    than SUCCESS_KEPT dropped). Exact under concurrent writers: a delta committed meanwhile is
    not seen by the DELETE and stays as it is."""
    from migrations_app import coverage

    coverage.compact()  # the coverage figures' tally, kept the same way
    since = timezone.now() - SUCCESS_KEPT
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for table, columns, extra in (
                (STATUS, "status", ""),
                (FAILURE, "error_kind, error_template", ""),
                (SUCCESS, "minute", "WHERE minute >= %s"),
            ):
                cursor.execute(
                    f"WITH moved AS (DELETE FROM {table} RETURNING {columns}, count) "
                    f"INSERT INTO {table} ({columns}, count) SELECT {columns}, sum(count) "
                    f"FROM moved {extra} GROUP BY {columns} HAVING sum(count) <> 0",
                    [since] if extra else [],
                )
        return
    from migrations_app.models import FailureTally, StatusTally, SuccessTally

    with transaction.atomic():
        _fold(StatusTally, ["status"])
        _fold(FailureTally, ["error_kind", "error_template"])
        _fold(SuccessTally, ["minute"], lambda row: row["minute"] >= since)


def _fold(
    model: type[models.Model],
    keys: list[str],
    keep: Callable[[dict[str, Any]], bool] = lambda row: True,
) -> None:
    """SQLite's compaction of one tally: its rows summed per key, written back."""
    manager = model._default_manager
    rows = list(manager.order_by().values(*keys).annotate(total=Sum("count")))
    manager.all().delete()
    manager.bulk_create(
        model(**{key: row[key] for key in keys}, count=row["total"])
        for row in rows
        if row["total"] and keep(row)
    )


# --- reading -------------------------------------------------------------------------------------
def status_counts() -> dict[str, int]:
    from migrations_app.models import StatusTally

    rows = StatusTally.objects.order_by().values_list("status").annotate(n=Sum("count"))
    return {status: n for status, n in rows if n}


def successes_since(start: datetime) -> dict[datetime, int]:
    from migrations_app.models import SuccessTally

    rows = (
        SuccessTally.objects.filter(minute__gte=start)
        .order_by()
        .values_list("minute")
        .annotate(n=Sum("count"))
    )
    return {minute: n for minute, n in rows}


def failure_groups(limit: int) -> list[dict[str, Any]]:
    from migrations_app.models import FailureTally

    return list(
        FailureTally.objects.order_by()
        .values("error_kind", "error_template")
        .annotate(count=Sum("count"))
        .filter(count__gt=0)
        .order_by("-count", "error_kind")[:limit]
    )

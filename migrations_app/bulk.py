"""Plain-SQL bulk writes for intake, where the ORM's per-object work dominates.

PostgreSQL gets COPY and INSERT … ON CONFLICT over arrays; SQLite gets executemany. Both are
used only inside the caller's transaction.
"""

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Model

Row = Sequence[Any]


def _columns(columns: Iterable[str]) -> str:
    return ", ".join(connection.ops.quote_name(c) for c in columns)


def copy_rows(model: type[Model], columns: list[str], rows: Iterable[Row]) -> None:
    """Append rows (tuples in `columns` order; JSON columns as text) to the model's table."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            statement = f"COPY {table} ({_columns(columns)}) FROM STDIN"
            # wrap_database_errors: the driver's IntegrityError and friends raised as Django's
            with connection.wrap_database_errors, cursor.cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(
                f"INSERT INTO {table} ({_columns(columns)}) VALUES ({marks})", list(rows)
            )


def insert_new_thread_ids(
    model: type[Model], thread_ids: Collection[str], import_batch_id: int | None
) -> int:
    """Insert the ids not yet registered, as listed (from an id list staff gave: see
    coverage.py); returns how many were new. Every other column takes its database default.

    PostgreSQL: a COPY first, in a savepoint; it is undone whole when it meets an id already
    registered, and INSERT … ON CONFLICT takes over. A COPY of new ids is about a third faster
    (tests/benchmarks/bench_import_floor.py)."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT OR IGNORE INTO {connection.ops.quote_name(model._meta.db_table)} "
                "(thread_id, import_batch_id, listed) VALUES (%s, %s, %s)",
                [(thread_id, import_batch_id, True) for thread_id in thread_ids],
            )
            return cursor.rowcount
    try:
        with transaction.atomic():
            rows = ((thread_id, import_batch_id, True) for thread_id in thread_ids)
            copy_rows(model, ["thread_id", "import_batch_id", "listed"], rows)
        return len(thread_ids)
    except IntegrityError:
        return insert_thread_ids_skipping_registered(model, thread_ids, import_batch_id)


def insert_thread_ids_skipping_registered(
    model: type[Model], thread_ids: Collection[str], import_batch_id: int | None
) -> int:
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (thread_id, import_batch_id, listed) "
            "SELECT unnest(%s::text[]), %s, true ON CONFLICT (thread_id) DO NOTHING",
            [list(thread_ids), import_batch_id],
        )
        return cursor.rowcount


SQLITE_PIECE = 500  # ids per statement on SQLite (its limit on parameters)


def list_registered(model: type[Model], thread_ids: Collection[str], import_batch_id: int) -> None:
    """Threads of an id list that were registered before it: marked listed, and made members
    of the list's batch (those it registered itself are its own: Thread.import_batch)."""
    from migrations_app.models import BatchMember

    table = connection.ops.quote_name(model._meta.db_table)
    member = connection.ops.quote_name(BatchMember._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            ids = list(thread_ids)
            cursor.execute(
                f"INSERT INTO {member} (batch_id, thread_id) SELECT %s, id FROM {table} "
                "WHERE thread_id = ANY(%s::text[]) AND import_batch_id IS DISTINCT FROM %s "
                "ON CONFLICT DO NOTHING",
                [import_batch_id, ids, import_batch_id],
            )
            cursor.execute(
                f"UPDATE {table} SET listed = true "
                "WHERE thread_id = ANY(%s::text[]) AND NOT listed",
                [ids],
            )
            return
        ids = list(thread_ids)
        for start in range(0, len(ids), SQLITE_PIECE):
            piece = ids[start : start + SQLITE_PIECE]
            marks = ", ".join(["%s"] * len(piece))
            cursor.execute(
                f"INSERT OR IGNORE INTO {member} (batch_id, thread_id) SELECT %s, id FROM {table} "
                f"WHERE thread_id IN ({marks}) AND import_batch_id IS NOT %s",
                [import_batch_id, *piece, import_batch_id],
            )
            cursor.execute(
                f"UPDATE {table} SET listed = 1 WHERE thread_id IN ({marks}) AND NOT listed", piece
            )


def add_members(import_batch_id: int, thread_pks: Collection[int]) -> None:
    """Threads a batch named that were registered before it (see BatchMember)."""
    from migrations_app.models import BatchMember

    if thread_pks:
        BatchMember.objects.bulk_create(
            (BatchMember(batch_id=import_batch_id, thread_id=pk) for pk in thread_pks),
            ignore_conflicts=True,
        )


# --- the mirror of a thread ----------------------------------------------------------------------
# A thread's mirror columns, in the order of the rows below (after thread_id or pk). JSON as text.
MIRROR_COLUMNS = [
    "data",
    "created_at",
    "message_count",
    "assistant_id",
    "warning_count",
    "items_total",
    "export_info",
]
_ARRAY_TYPES = ["text", "timestamptz", "integer", "bigint", "integer", "integer", "text"]
JSON_COLUMNS = ("data", "export_info")
# Set when a thread is inserted with its mirror, never by a later mirror (a fetch keeps it).
INSERT_ONLY_COLUMNS = ["export_state"]


@dataclass
class _Unnested:
    """Rows as PostgreSQL reads them in one statement: `clause` (FROM …) yields `v.<column>`
    for each column from one array per column (`arrays`, its parameters) and `v.n`, the row's
    ordinal. A JSON column comes instead from one jsonb array for all rows, indexed by `v.n`
    (`values`, whose parameters `json_params` gives in a statement's order): a text[] of JSON
    would be quoted by the driver element by element, a regex match per quote mark (40 % of the
    time to load a v1 export, whose threads carry their files' metadata)."""

    clause: str
    values: dict[str, str]
    arrays: list[list[Any]]
    json: dict[str, str]

    def json_params(self, columns: Iterable[str]) -> list[str]:
        return [self.json[c] for c in columns if c in self.json]


def _unnest(names: list[str], kinds: list[str], rows: list[Row]) -> _Unnested:
    columns = dict(zip(names, zip(*rows, strict=True), strict=True))
    plain = [(name, kind) for name, kind in zip(names, kinds, strict=True)
             if name not in JSON_COLUMNS]  # fmt: skip
    arrays = ", ".join(f"%s::{kind}[]" for _, kind in plain)
    clause = f"unnest({arrays}) WITH ORDINALITY AS v({', '.join(n for n, _ in plain)}, n)"
    values = {name: f"v.{name}" for name, _ in plain}
    json = {}
    for name in names:
        if name in JSON_COLUMNS:
            values[name] = "NULLIF((%s::jsonb) -> (v.n::int - 1), 'null'::jsonb)"
            json[name] = "[" + ",".join("null" if t is None else t for t in columns[name]) + "]"
    return _Unnested(clause, values, [list(columns[name]) for name, _ in plain], json)


def _adapted(rows: Iterable[Row], at: int) -> list[tuple[Any, ...]]:
    """Rows with their datetimes as the backend stores them (SQLite: text)."""
    adapt = connection.ops.adapt_datetimefield_value
    return [(*row[:at], adapt(row[at]), *row[at + 1 :]) for row in rows]


def insert_mirror_rows(
    model: type[Model], rows: list[Row], import_batch_id: int | None, now: datetime
) -> dict[str, int]:
    """Insert threads that are not registered yet, with their mirror: rows are
    (thread_id, *MIRROR_COLUMNS values, *INSERT_ONLY_COLUMNS values). Existing threads are left
    untouched (their mirror is replaced only under a lock, by update_mirror_rows). Returns
    {thread_id: pk} of those inserted."""
    if not rows:
        return {}
    table = connection.ops.quote_name(model._meta.db_table)
    inserted = [*MIRROR_COLUMNS, *INSERT_ONLY_COLUMNS]
    columns = _columns(["thread_id", "import_batch_id", "fetched_at", "updated_at", *inserted])
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            kinds = ["text", *_ARRAY_TYPES, *["text"] * len(INSERT_ONLY_COLUMNS)]
            source = _unnest(["thread_id", *inserted], kinds, rows)
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT v.thread_id, %s, %s, %s, "
                f"{', '.join(source.values[c] for c in inserted)} FROM {source.clause} "
                "ON CONFLICT (thread_id) DO NOTHING RETURNING id, thread_id",
                [import_batch_id, now, now, *source.json_params(inserted), *source.arrays],
            )
            return {thread_id: pk for pk, thread_id in cursor.fetchall()}
        # SQLite: one writer at a time (the transaction holds the lock), so "not there yet" is
        # "inserted by us".
        ids = [row[0] for row in rows]
        there = set(
            model._default_manager.filter(thread_id__in=ids).values_list("thread_id", flat=True)
        )
        new = [row for row in rows if row[0] not in there]
        stamp = connection.ops.adapt_datetimefield_value(now)
        marks = ", ".join(["%s"] * (4 + len(inserted)))
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})",
            [(row[0], import_batch_id, stamp, stamp, *row[1:]) for row in _adapted(new, 2)],
        )
    return dict(
        model._default_manager.filter(thread_id__in=[row[0] for row in new]).values_list(
            "thread_id", "pk"
        )
    )


def update_mirror_rows(model: type[Model], rows: list[Row], now: datetime) -> None:
    """Replace the mirror of existing threads: rows are (pk, *MIRROR_COLUMNS values). The caller
    holds their row locks (states.lock_writable_mirrors)."""
    if not rows:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            source = _unnest(["pk", *MIRROR_COLUMNS], ["bigint", *_ARRAY_TYPES], rows)
            assignments = ", ".join(f"{quote(c)} = {source.values[c]}" for c in MIRROR_COLUMNS)
            cursor.execute(
                f"UPDATE {table} AS t SET {assignments}, fetched_at = %s, updated_at = %s "
                f"FROM {source.clause} WHERE t.id = v.pk",
                [*source.json_params(MIRROR_COLUMNS), now, now, *source.arrays],
            )
            return
        stamp = connection.ops.adapt_datetimefield_value(now)
        assignments = ", ".join(f"{quote(c)} = %s" for c in MIRROR_COLUMNS)
        cursor.executemany(
            f"UPDATE {table} SET {assignments}, fetched_at = %s, updated_at = %s WHERE id = %s",
            [(*row[1:], stamp, stamp, row[0]) for row in _adapted(rows, 2)],
        )

"""Plain-SQL bulk writes for intake, where the ORM's per-object work dominates.

PostgreSQL gets COPY and INSERT … ON CONFLICT over arrays; SQLite gets executemany. Both are
used only inside the caller's transaction.
"""

from django.db import connection


def _columns(columns):
    return ", ".join(connection.ops.quote_name(c) for c in columns)


def copy_rows(model, columns, rows):
    """Append rows (tuples in `columns` order; JSON columns as text) to the model's table."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({_columns(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO {table} ({_columns(columns)}) VALUES ({marks})", rows)


def insert_new_thread_ids(model, thread_ids, import_batch_id):
    """Insert the ids not yet registered; returns how many were new. Every other column takes
    its database default."""
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} (thread_id, import_batch_id) "
                "SELECT unnest(%s::text[]), %s ON CONFLICT (thread_id) DO NOTHING",
                [list(thread_ids), import_batch_id],
            )
        else:
            cursor.executemany(
                f"INSERT OR IGNORE INTO {table} (thread_id, import_batch_id) VALUES (%s, %s)",
                [(thread_id, import_batch_id) for thread_id in thread_ids],
            )
        return cursor.rowcount

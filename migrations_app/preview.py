"""The one preview: a mirrored thread as the exact items, warnings and API calls its upload will
use. The admin preview, the dry run and the upload all call `preview_thread`."""

import json
from typing import Any

import orjson
from django.conf import settings

from migrations_app import sql
from migrations_app.conversion import Conversion, Options, convert_thread
from migrations_app.models import Message, RunStep, Thread


class ThreadNotMirrored(Exception):
    """The thread's messages have not been fetched or loaded yet."""


def conversion_options() -> Options:
    return Options(tool_calls=settings.MIGRATE_TOOL_CALLS, attachments=settings.MIGRATE_ATTACHMENTS)


def preview_thread(thread: Thread, options: Options | None = None) -> Conversion:
    """The thread's conversion with `options` (default: the current settings)."""
    if thread.data is None:
        raise ThreadNotMirrored(f"{thread.thread_id} has not been fetched from the source yet")
    messages, steps = mirrored(thread.pk)
    return convert_thread(
        thread.data,
        messages,
        steps,
        options or conversion_options(),
        export_errors=export_errors(thread),
    )


def export_errors(thread: Thread) -> list[dict]:
    """What the export the thread's mirror came from could not hold (see Thread.export_info)."""
    return list((thread.export_info or {}).get("errors") or [])


def mirrored(thread_pk: int) -> tuple[list[Any], list[Any]]:
    """The thread's mirrored messages, in source order (convert_thread sorts by created_at and
    breaks ties by this order), and run steps. Read in SQL and decoded by orjson: every upload
    reads them, and the ORM's query building and json decoding were a tenth of a worker's CPU."""
    messages = sql.rows(
        f"SELECT data FROM {sql.table(Message)} WHERE thread_id = %s ORDER BY position", [thread_pk]
    )
    steps = sql.rows(
        f"SELECT data FROM {sql.table(RunStep)} WHERE thread_id = %s ORDER BY created_at, id",
        [thread_pk],
    )
    return [_decoded(row[0]) for row in messages], [_decoded(row[0]) for row in steps]


def _decoded(value: Any) -> Any:
    """A JSON column's value: text from PostgreSQL (as Django has psycopg load it) and SQLite;
    what orjson refuses (an integer past 64 bits) is left to the json module, as the ORM would."""
    if not isinstance(value, str | bytes):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return json.loads(value)

"""The one preview: a mirrored thread as the exact items, warnings and API calls its upload will
use. The admin preview, the dry run and the upload all call `preview_thread`."""

from django.conf import settings

from migrations_app.conversion import Conversion, Options, convert_thread
from migrations_app.models import Thread


class ThreadNotMirrored(Exception):
    """The thread's messages have not been fetched or loaded yet."""


def conversion_options() -> Options:
    return Options(tool_calls=settings.MIGRATE_TOOL_CALLS, attachments=settings.MIGRATE_ATTACHMENTS)


def preview_thread(thread: Thread, options: Options | None = None) -> Conversion:
    """The thread's conversion with `options` (default: the current settings)."""
    if thread.data is None:
        raise ThreadNotMirrored(f"{thread.thread_id} has not been fetched from the source yet")
    # Source order; convert_thread sorts by created_at and breaks ties by this order.
    messages = list(thread.messages.order_by("position").values_list("data", flat=True))
    steps = list(thread.run_steps.order_by("created_at", "pk").values_list("data", flat=True))
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

"""Compact list cells: times in one short line with the full time in a tooltip, long text on one
line with the whole of it in a tooltip. HTML only through format_html."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.db.models import Model
from django.utils import dateformat, timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

TOOLTIP_LIMIT = 1000  # characters of a long text kept in its tooltip; the page shows the rest


def compact_time(value: datetime | None, now: datetime | None = None) -> SafeString | str:
    """'26 Nov 13:02' this year, '26 Nov 2025' before; the full time in the tooltip."""
    if value is None:
        return ""
    local = timezone.localtime(value)
    today = timezone.localtime(now or timezone.now())
    shown = dateformat.format(local, "d M H:i" if local.year == today.year else "d M Y")
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        local.isoformat(),
        date_format(local, "DATETIME_FORMAT"),
        shown,
    )


def one_line(text: str, css_class: str = "one-line") -> SafeString | str:
    """Long text cut to one line by the stylesheet; the tooltip holds the text."""
    if not text:
        return ""
    tooltip = text if len(text) <= TOOLTIP_LIMIT else text[:TOOLTIP_LIMIT] + "…"
    return format_html('<span class="{}" title="{}">{}</span>', css_class, tooltip, text[:300])


# A constant of ours, not data: safe as it is.
COPY_ICON = mark_safe(
    '<svg viewBox="0 0 16 16" width="13" height="13" aria-hidden="true" focusable="false">'
    '<rect x="5" y="1" width="10" height="11" rx="1.5"/><path d="M3 4H2.5A1.5 1.5 0 0 0 1 5.5v9'
    'A1.5 1.5 0 0 0 2.5 16h7a1.5 1.5 0 0 0 1.5-1.5V14"/></svg>'
)


def copy_button(value: str, what: str) -> SafeString | str:
    """A button that copies `value` to the clipboard in one click (console.js)."""
    if not value:
        return ""
    return format_html(
        '<button type="button" class="copy-id" data-copy="{}" title="Copy the {}" '
        'aria-label="Copy the {} {}">{}</button>',
        value,
        what,
        what,
        value,
        COPY_ICON,
    )


ID_SHOWN_WHOLE = 32  # characters; a longer id shows its start and its end, "…" between


def short_id(value: str) -> str:
    """An id for a list cell: whole up to ID_SHOWN_WHOLE characters (a thread's, the sandbox's
    conversations); else its first 16 and last 10 characters (an API conversation id is 53):
    the start that search finds it by, the end that tells two apart."""
    if len(value) <= ID_SHOWN_WHOLE:
        return value
    return f"{value[:16]}…{value[-10:]}"


def id_with_copy(value: str, what: str) -> SafeString | str:
    """An id on one line, whole or with its middle left out (the whole in the tooltip), and a
    button that copies the whole of it."""
    if not value:
        return ""
    return format_html(
        '<span class="id-cell"><span class="id-text" title="{}">{}</span>{}</span>',
        value,
        short_id(value),
        copy_button(value, what),
    )


def time_column(field: str, description: str) -> Callable[[Model], SafeString | str]:
    """A list_display column showing `field` as a compact time, sortable by it."""

    @admin.display(description=description, ordering=field)
    def column(obj: Model) -> SafeString | str:
        return compact_time(getattr(obj, field))

    column.__name__ = field  # the column's CSS class: column-<field>
    return column


# A count column's value: a number, or None (shown as the admin's empty value). Django shows any
# value; django-stubs types list_display entries as callables returning str or bool.
CountCell = Any


def count_column(field: str, description: str) -> Callable[[Model], CountCell]:
    """A list_display column for a count under a short header, sortable."""

    @admin.display(description=description, ordering=field)
    def column(obj: Model) -> CountCell:
        return getattr(obj, field)

    column.__name__ = field
    return column


def import_error_text(error: dict[str, Any]) -> str:
    """One import error as a line: 'file, line N: message', without repeating a location the
    message already starts with ('Line 4: …')."""
    message = error.get("message") or ""
    line = error.get("line")
    where = [error["file"]] if error.get("file") else []
    if line and not message.lower().startswith(f"line {line}:"):
        where.append(f"line {line}")
    return f"{', '.join(where)}: {message}" if where else message

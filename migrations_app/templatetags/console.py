import json
import re
from datetime import UTC, datetime
from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

register = template.Library()


@register.filter
def as_json(value: Any) -> str:
    """Pretty JSON as text: the template escapes it like any other string."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@register.filter
def unix_time(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError):
        return None


@register.filter
def get(mapping: dict[str, Any] | None, key: str) -> Any:
    return (mapping or {}).get(key)


# http:// or https://, then no whitespace or control character anywhere: what a browser would
# read as the same http(s) URL. Anything else (javascript:, data:, vbscript:, a relative path, a
# scheme hidden behind a tab or a leading control character) is never a link.
URL_SHOWN_CHARS = 120  # a data: URL can hold a whole image
_HTTP_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f]+", flags=re.IGNORECASE)


@register.filter
def http_url(value: Any) -> str:
    """The value if it is an http(s) URL, else "": the only URLs the console renders as links."""
    if isinstance(value, str) and _HTTP_URL.fullmatch(value):
        return value
    return ""


@register.filter
def external_link(value: Any) -> SafeString:
    """A URL from the API: a link (new tab, no referrer) if it is http(s), else escaped text."""
    url = http_url(value)
    shown = Truncator("" if value is None else value).chars(URL_SHOWN_CHARS)
    if url:
        return format_html(
            '<a href="{}" rel="noreferrer noopener" target="_blank">{}</a>', url, shown
        )
    return format_html('<span class="unlinked-url">{}</span>', shown)


@register.simple_tag
def copy_button(value: str, what: str) -> SafeString | str:
    """A one-click copy button for an id (console.js)."""
    from migrations_app.admin.display import copy_button as button

    return button(value, what)


@register.filter
def grouped(value: Any) -> str:
    """A count with thousands separators, the same way everywhere: 3,703 and 2,890."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "" if value is None else str(value)


@register.simple_tag
def error_text(message: str, http_status: int | None) -> str:
    """An error message with its HTTP status, said once: messages from the API client already
    end in "(HTTP 404)"."""
    if not http_status or f"HTTP {http_status}" in (message or ""):
        return message or ""
    return f"{message} (HTTP {http_status})"


@register.inclusion_tag("admin/migrations_app/_overview.html")
def console_overview() -> dict[str, Any]:
    """The dashboard's key figures for the admin index: counts per state and the progress bar
    (one query that an index serves)."""
    from django.urls import reverse

    from migrations_app import dashboard

    counts = dashboard.status_counts()
    by_status = {c.status: c.count for c in counts}
    return {
        "counts": counts,
        "progress": dashboard.progress(counts),
        "active": by_status["queued"] + by_status["running"],
        "failed": by_status["failed"],
        "threads_url": reverse("admin:migrations_app_thread_changelist"),
        "dashboard_url": reverse("admin:migrations_app_dashboard"),
    }

import json
from datetime import UTC, datetime

from django import template

register = template.Library()


@register.filter
def as_json(value):
    """Pretty JSON as text: the template escapes it like any other string."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@register.filter
def unix_time(value):
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError):
        return None


@register.filter
def get(mapping, key):
    return (mapping or {}).get(key)


@register.filter
def is_web_url(value: object) -> bool:
    """Only http(s) URLs become links: a `javascript:` or `data:` URL from the source is shown
    as text, never followed."""
    return isinstance(value, str) and value.lower().startswith(("https://", "http://"))


@register.simple_tag
def error_text(message: str, http_status: int | None) -> str:
    """An error message with its HTTP status, said once: messages from the API client already
    end in "(HTTP 404)"."""
    if not http_status or f"HTTP {http_status}" in (message or ""):
        return message or ""
    return f"{message} (HTTP {http_status})"


@register.inclusion_tag("admin/migrations_app/_overview.html")
def console_overview() -> dict:
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

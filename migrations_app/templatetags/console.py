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

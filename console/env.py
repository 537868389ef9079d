"""Typed readers for environment variables that fail loudly on bad values."""

import os
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"true", "1"}
_FALSE = {"false", "0"}


def env_str(name, default=None, environ=os.environ):
    value = environ.get(name, "").strip()
    return value if value else default


def env_bool(name, default, environ=os.environ):
    raw = env_str(name, environ=environ)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true/false/1/0 (any case), got {raw!r}")


def _env_number(name, default, parse, kind, minimum, environ):
    raw = env_str(name, environ=environ)
    if raw is None:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {kind}, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_int(name, default, *, minimum=None, environ=os.environ):
    return _env_number(name, default, int, "a whole number", minimum, environ)


def env_float(name, default, *, minimum=None, environ=os.environ):
    return _env_number(name, default, float, "a number", minimum, environ)


def env_list(name, default, environ=os.environ):
    raw = env_str(name, environ=environ)
    if raw is None:
        return list(default)
    return [part.strip() for part in raw.split(",") if part.strip()]


def env_proxy_header(name: str, environ: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """`X-Forwarded-Proto: https` → ("HTTP_X_FORWARDED_PROTO", "https"), Django's form."""
    raw = env_str(name, environ=environ)
    if raw is None:
        return None
    header, colon, value = raw.partition(":")
    header, value = header.strip(), value.strip()
    if not colon or not header or not value or " " in header:
        raise ImproperlyConfigured(f"{name} must look like 'X-Forwarded-Proto: https', got {raw!r}")
    return "HTTP_" + header.upper().replace("-", "_"), value

"""Typed readers for environment variables that fail loudly on bad values."""

import os
from collections.abc import Callable, Mapping
from typing import TypeVar, overload

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"true", "1"}
_FALSE = {"false", "0"}
N = TypeVar("N", int, float)
Environ = Mapping[str, str]


@overload
def env_str(name: str, default: str, environ: Environ = os.environ) -> str: ...
@overload
def env_str(name: str, default: None = None, environ: Environ = os.environ) -> str | None: ...
def env_str(name: str, default: str | None = None, environ: Environ = os.environ) -> str | None:
    value = environ.get(name, "").strip()
    return value if value else default


def env_bool(name: str, default: bool, environ: Environ = os.environ) -> bool:
    raw = env_str(name, environ=environ)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true/false/1/0 (any case), got {raw!r}")


def _env_number(
    name: str,
    default: N,
    parse: Callable[[str], N],
    kind: str,
    minimum: N | None,
    environ: Environ,
) -> N:
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


def env_int(
    name: str, default: int, *, minimum: int | None = None, environ: Environ = os.environ
) -> int:
    return _env_number(name, default, int, "a whole number", minimum, environ)


def env_float(
    name: str, default: float, *, minimum: float | None = None, environ: Environ = os.environ
) -> float:
    return _env_number(name, default, float, "a number", minimum, environ)


def env_choice(
    name: str, choices: tuple[str, ...], default: str, environ: Environ = os.environ
) -> str:
    """One of `choices`, compared in lower case; anything else stops start-up naming them."""
    raw = env_str(name, environ=environ)
    if raw is None:
        return default
    if raw.lower() not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw.lower()


def env_list(name: str, default: list[str], environ: Environ = os.environ) -> list[str]:
    raw = env_str(name, environ=environ)
    if raw is None:
        return list(default)
    return [part.strip() for part in raw.split(",") if part.strip()]


def env_proxy_header(name: str, environ: Environ = os.environ) -> tuple[str, str] | None:
    """`X-Forwarded-Proto: https` → ("HTTP_X_FORWARDED_PROTO", "https"), Django's form."""
    raw = env_str(name, environ=environ)
    if raw is None:
        return None
    header, colon, value = raw.partition(":")
    header, value = header.strip(), value.strip()
    if not colon or not header or not value or " " in header:
        raise ImproperlyConfigured(f"{name} must look like 'X-Forwarded-Proto: https', got {raw!r}")
    return "HTTP_" + header.upper().replace("-", "_"), value

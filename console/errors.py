"""Secrets never shown: the debug page, error reports and log output mask them.

Two layers. By name: DATABASE_URL and every setting Django already hides (…KEY, …SECRET, …TOKEN,
…PASS…) are replaced whole, and the password inside any URL-shaped value is masked wherever a
setting or a request header is shown. By value: the secrets themselves (every `*_KEY`, `*_SECRET`,
`*_TOKEN`, `*_PASSWORD` setting, the database passwords and URL passwords) are cut out of the
finished page, report or log line, so an exception message or a local variable that happens to
hold one cannot carry it out either. Tokens no setting holds (Microsoft Entra ID access tokens, any
`Bearer …` credential) are masked by their shape.
"""

import html
import logging
import re
from collections.abc import Iterable
from functools import cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.safestring import SafeString, mark_safe
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

SUBSTITUTE = SafeExceptionReporterFilter.cleansed_substitute
# Django's own list plus the database URL, which carries the database password.
HIDDEN_NAMES = re.compile(
    "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE_URL|DSN", flags=re.I
)
# Settings whose value is itself a secret (not AUTH_USER_MODEL, PASSWORD_HASHERS, …).
SECRET_NAMES = re.compile(r"(_KEY|_SECRET|_TOKEN|_PASSWORD)$|^SECRET_KEY_FALLBACKS$")
# scheme://user:password@host — the password is group 2.
URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@/\s]+)(@)", flags=re.I)
SHORTEST_SECRET = 8  # shorter values ("test", "sandbox") would mask ordinary words
# Secrets no setting holds: Microsoft Entra ID access tokens (JWTs, fetched at run time) and the
# credential of any `Authorization: Bearer …` shown in a message.
BEARER_CREDENTIAL = re.compile(r"(\bBearer\s+)([^\s'\",;]{8,})")
JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")


def mask_tokens(text: str) -> str:
    """Bearer credentials and JWT-shaped tokens replaced by stars."""
    text = BEARER_CREDENTIAL.sub(lambda m: m.group(1) + SUBSTITUTE, text)
    return JWT.sub(SUBSTITUTE, text)


def mask_url_passwords(text: str) -> str:
    """`postgres://console:s3cret@db/console` → `postgres://console:********************@db/…`"""
    return URL_PASSWORD.sub(lambda m: m.group(1) + SUBSTITUTE + m.group(3), text)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


@cache
def secret_values() -> tuple[str, ...]:
    """Every secret the configuration holds, longest first."""
    found: set[str] = set()
    for name in dir(settings):
        if not name.isupper():
            continue
        value = getattr(settings, name, None)
        if SECRET_NAMES.search(name):
            found.update(_strings(value))
        for text in _strings(value):
            found.update(match.group(2) for match in URL_PASSWORD.finditer(text))
    for database in settings.DATABASES.values():
        found.update(_strings(database.get("PASSWORD")))
    return tuple(sorted((s for s in found if len(s) >= SHORTEST_SECRET), key=len, reverse=True))


@receiver(setting_changed)
def _forget_secrets(**kwargs: Any) -> None:
    secret_values.cache_clear()


def redact(text: str) -> str:
    """The text with every configured secret and every URL password replaced by stars."""
    for secret in secret_values():
        for form in {secret, html.escape(secret)}:  # as is, and as the debug page escapes it
            if form in text:
                text = text.replace(form, SUBSTITUTE)
    return mask_tokens(mask_url_passwords(text))


class SecretsFilter(SafeExceptionReporterFilter):
    """DEFAULT_EXCEPTION_REPORTER_FILTER: hides by name, by URL shape and by value."""

    hidden_settings = HIDDEN_NAMES

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            return redact(cleansed)
        return cleansed

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        """A local variable whose text holds a secret is shown as stars, whatever its name."""
        secrets = secret_values()
        cleansed = []
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            try:
                text = repr(value)
            except Exception:  # a broken __repr__ must not break the error report
                text = ""
            if (
                any(secret in text for secret in secrets)
                or URL_PASSWORD.search(text)
                or JWT.search(text)
            ):
                value = SUBSTITUTE
            cleansed.append((name, value))
        return cleansed


class SecretsReporter(ExceptionReporter):
    """DEFAULT_EXCEPTION_REPORTER: the finished debug page and report, secrets cut out."""

    # Django's own page, still safe: redact() only puts stars where a secret's text was.
    def get_traceback_html(self) -> SafeString:
        return mark_safe(redact(super().get_traceback_html()))

    def get_traceback_text(self) -> SafeString:
        return mark_safe(redact(super().get_traceback_text()))


class RedactingFormatter(logging.Formatter):
    """The log handler's formatter: a line (and its traceback) never carries a secret."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))

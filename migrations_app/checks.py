"""Start-up checks for configurations that would fail later, at the worst moment."""

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register


@register()
def check_api_configuration(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if settings.OPENAI_BASE_URL and not settings.OPENAI_API_KEY:
        messages.append(
            Error(
                "OPENAI_BASE_URL is set but OPENAI_API_KEY is not.",
                hint="Set OPENAI_API_KEY too, or unset OPENAI_BASE_URL to use the sandbox.",
                id="migrations_app.E001",
            )
        )
    if settings.ASSISTANTS_BASE_URL and not settings.ASSISTANTS_API_KEY:
        messages.append(
            Error(
                "ASSISTANTS_BASE_URL is set but no key for it "
                "(ASSISTANTS_API_KEY or OPENAI_API_KEY).",
                id="migrations_app.E002",
            )
        )
    return messages


@register(deploy=True)
def check_database_for_workers(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    engine = settings.DATABASES["default"]["ENGINE"]
    if "sqlite" in engine and not settings.DEBUG:
        return [
            Warning(
                "SQLite with DEBUG off: fine for a rehearsal, but several workers on several "
                "machines need PostgreSQL.",
                hint="Set DATABASE_URL=postgres://…",
                id="migrations_app.W001",
            )
        ]
    return []


@register()
def check_cluster_settings(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    conf = settings.Q_CLUSTER
    if conf.get("retry", 0) <= conf.get("timeout", 0):
        return [
            Error(
                "Q_RETRY must be larger than Q_TIMEOUT, or django-q2 hands a running task to a "
                "second worker.",
                id="migrations_app.E003",
            )
        ]
    return []


@register()
def check_lease_outlives_requests(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    if settings.MIGRATION_LEASE_SECONDS < 2 * settings.API_TIMEOUT_SECONDS:
        return [
            Error(
                f"MIGRATION_LEASE_SECONDS ({settings.MIGRATION_LEASE_SECONDS}) is shorter than "
                f"twice API_TIMEOUT_SECONDS ({settings.API_TIMEOUT_SECONDS}): a worker would "
                "renew its lease before nearly every request, and one that stalls could lose it "
                "mid-request.",
                hint="Raise MIGRATION_LEASE_SECONDS or lower API_TIMEOUT_SECONDS.",
                id="migrations_app.E004",
            )
        ]
    return []

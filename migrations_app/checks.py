"""Start-up checks for configurations that would fail later, at the worst moment."""

import importlib.util
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError
from django.utils import timezone

from migrations_app import connections

AZURE_ENDPOINTS = {
    "ASSISTANTS": "your Foundry project endpoint, "
    "e.g. https://<resource>.services.ai.azure.com/api/projects/<project>",
    "OPENAI": "your Azure OpenAI v1 endpoint, e.g. https://<resource>.openai.azure.com/openai/v1/",
}


@register()
def check_api_configuration(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if (
        settings.OPENAI_BASE_URL
        and not settings.OPENAI_API_KEY
        and settings.OPENAI_AUTH != connections.ENTRA
    ):
        messages.append(
            Error(
                "OPENAI_BASE_URL is set but OPENAI_API_KEY is not.",
                hint="Set OPENAI_API_KEY too (or OPENAI_AUTH=entra for a Microsoft Entra ID "
                "token), or unset OPENAI_BASE_URL to use the sandbox.",
                id="migrations_app.E001",
            )
        )
    if (
        settings.ASSISTANTS_BASE_URL
        and not settings.ASSISTANTS_API_KEY
        and settings.ASSISTANTS_AUTH != connections.ENTRA
    ):
        messages.append(
            Error(
                "ASSISTANTS_BASE_URL is set but no key for it "
                "(ASSISTANTS_API_KEY or OPENAI_API_KEY).",
                hint="Set ASSISTANTS_API_KEY, or ASSISTANTS_AUTH=entra for a Microsoft Entra ID "
                "token.",
                id="migrations_app.E002",
            )
        )
    for side in ("ASSISTANTS", "OPENAI"):
        messages += _azure_problems(side)
    return messages


def _azure_problems(side: str) -> list[CheckMessage]:
    """An Azure route (api-key or Entra ID) for `side` (ASSISTANTS or OPENAI) that is incomplete."""
    auth = getattr(settings, f"{side}_AUTH")
    if auth == connections.BEARER:
        return []
    problems: list[CheckMessage] = []
    if not getattr(settings, f"{side}_BASE_URL"):
        problems.append(
            Error(
                f"{side}_AUTH={auth} is Azure's authentication, but {side}_BASE_URL is not set: "
                "the console would send it to OpenAI (or the sandbox).",
                hint=f"Set {side}_BASE_URL to {AZURE_ENDPOINTS[side]}.",
                id="migrations_app.E005",
            )
        )
    if side == "ASSISTANTS" and not settings.ASSISTANTS_API_VERSION:
        problems.append(
            Error(
                f"ASSISTANTS_AUTH={auth} names an Azure source, and Azure's classic agents refuse "
                "every request without an api-version, but ASSISTANTS_API_VERSION is not set.",
                hint="Set ASSISTANTS_API_VERSION=v1 (Foundry's GA version).",
                id="migrations_app.E006",
            )
        )
    if auth == connections.ENTRA and importlib.util.find_spec("azure.identity") is None:
        problems.append(
            Error(
                f"{side}_AUTH=entra needs the azure-identity package, which is not installed.",
                hint="pip install -r requirements.lock (it pins azure-identity).",
                id="migrations_app.E007",
            )
        )
    if auth == connections.ENTRA and side == "OPENAI" and settings.OPENAI_API_KEY:
        problems.append(
            Warning(
                "OPENAI_API_KEY is set but OPENAI_AUTH=entra: the destination is reached with a "
                "Microsoft Entra ID token and the key is not used.",
                hint="Unset OPENAI_API_KEY, or set OPENAI_AUTH to bearer or api-key.",
                id="migrations_app.W002",
            )
        )
    return problems


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


@register(Tags.database)
def check_sweeper(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """`manage.py check --database default`: the sweeper's schedule exists, and it has run
    lately while threads wait (nothing else resumes threads whose worker died)."""
    from django_q.models import Schedule

    from migrations_app.apps import SWEEPER
    from migrations_app.dashboard import SWEEP_LATE
    from migrations_app.models import Heartbeat, Thread, ThreadStatus

    if not kwargs.get("databases"):  # only when asked for (`check --database`, `migrate`)
        return []
    messages: list[CheckMessage] = []
    try:
        if not Schedule.objects.filter(func=SWEEPER).exists():
            messages.append(
                Warning(
                    "The sweeper's django-q2 schedule is missing (the workers still offer to run "
                    "it, but nothing starts it when none is running).",
                    hint="Run `manage.py migrate`: it recreates the schedule.",
                    id="migrations_app.W010",
                )
            )
        swept = Heartbeat.objects.filter(name="sweep").values_list("last_finished", flat=True)
        last = swept.first()
        waiting = Thread.objects.filter(status__in=[ThreadStatus.QUEUED, ThreadStatus.RUNNING])
        if (not last or last < timezone.now() - SWEEP_LATE) and waiting.exists():
            messages.append(
                Warning(
                    "The sweeper has not run for over three minutes while threads are queued or "
                    "running: threads whose worker died are not resumed.",
                    hint="Start the workers (`manage.py qcluster`); each offers to run it.",
                    id="migrations_app.W011",
                )
            )
    except DatabaseError:  # not migrated yet: `migrate` runs these checks before it migrates
        return []
    return messages

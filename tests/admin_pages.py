"""Every admin URL the console serves, enumerated from the URL conf, and a small world of objects
(one row of every registered model, threads in every state an action applies to) to fill their
ids in. Shared by the permission ladder and the secrets test; and how a test sends an action."""

import re
from dataclasses import dataclass
from itertools import product

from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Task

from migrations_app import api_tokens, intake
from migrations_app.admin.threads import VALID_BUTTONS
from migrations_app.models import (
    Assistant,
    Attempt,
    BulkAction,
    Conversation,
    ImportBatch,
    RunStep,
    Thread,
)
from tests.factories import error, source_message, source_thread

ADMIN_PREFIX = "/admin/"
# The views every ModelAdmin has, by the suffix of their URL name.
STANDARD_VIEWS = ("changelist", "add", "history", "delete", "change")
LEGACY_REDIRECT = "<path:object_id>/"  # Django's old change URL, unnamed, redirects to change/


@dataclass(frozen=True)
class AdminPattern:
    """One URL pattern of the admin. `key` names it on the ladder: the URL name (`admin:…`),
    or for an unnamed pattern its route; a ModelAdmin's standard views are keyed by kind."""

    key: str
    route: str
    model: type[models.Model] | None = None
    kind: str | None = None  # for a ModelAdmin's own views: one of STANDARD_VIEWS or "redirect"

    def __str__(self) -> str:
        if self.model is not None:
            return f"{self.model._meta.label_lower} {self.kind or self.key}"
        return self.key


def registered_models() -> list[type[models.Model]]:
    return [model for model in apps.get_models() if admin.site.is_registered(model)]


def _route(pattern: URLPattern | URLResolver) -> str:
    return str(pattern.pattern)


def admin_patterns() -> list[AdminPattern]:
    """Every leaf pattern under /admin/: the site's own and each registered ModelAdmin's."""
    found = []
    includes = {f"{m._meta.app_label}/{m._meta.model_name}/": m for m in registered_models()}
    for pattern in admin.site.get_urls():
        if isinstance(pattern, URLResolver):
            if _route(pattern) not in includes:
                raise AssertionError(f"admin URL include {_route(pattern)!r} is not a ModelAdmin's")
            continue  # listed below, from the ModelAdmin itself
        key = f"admin:{pattern.name}" if pattern.name else _route(pattern)
        found.append(AdminPattern(key=key, route=_route(pattern)))
    for model in registered_models():
        model_admin = admin.site.get_model_admin(model)
        prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
        for pattern in model_admin.get_urls():
            name = pattern.name or ""
            kind = name.removeprefix(prefix) if name.startswith(prefix) else None
            if kind in STANDARD_VIEWS:
                found.append(AdminPattern(f"admin:{name}", _route(pattern), model, kind))
            elif not name and _route(pattern) == LEGACY_REDIRECT:
                found.append(AdminPattern(LEGACY_REDIRECT, LEGACY_REDIRECT, model, "redirect"))
            else:
                key = f"admin:{name}" if name else _route(pattern)
                found.append(AdminPattern(key, _route(pattern), model))
    return found


_ROUTE_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")
_REGEX_PARAM = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def parameters(route: str) -> list[str]:
    return _ROUTE_PARAM.findall(route) + _REGEX_PARAM.findall(route)


def fill(route: str, values: dict[str, str]) -> str:
    path = _ROUTE_PARAM.sub(lambda m: values[m.group(1)], route)
    path = _REGEX_PARAM.sub(lambda m: values[m.group(1)], path)
    return path.removeprefix("^").removesuffix("$")


@dataclass
class World:
    """One object of every registered model, and threads in every state an action applies to."""

    objects: dict[type[models.Model], models.Model]
    threads: list[Thread]

    def urls(self, pattern: AdminPattern) -> list[str]:
        """Every URL of `pattern` with real ids filled in (several when a parameter has several
        values: each app label, each thread-page button)."""
        values: dict[str, list[str]] = {
            "app_label": sorted({m._meta.app_label for m in registered_models()}),
            "name": list(VALID_BUTTONS),
            "content_type_id": [str(ContentType.objects.get_for_model(Thread).pk)],
            "url": ["no-such-page/"],
        }
        # A ModelAdmin's URLs take one of its objects; the site's (view on site) a thread.
        obj = self.objects.get(pattern.model or Thread)
        if obj is None:
            raise AssertionError(f"the ladder's world has no {pattern.model.__name__}: add one")
        values["object_id"] = values["id"] = [str(obj.pk)]
        names = parameters(pattern.route)
        unknown = [n for n in names if n not in values]
        if unknown:
            raise AssertionError(f"{pattern}: no value for URL parameter(s) {unknown}: add them")
        prefix = ADMIN_PREFIX
        if pattern.model is not None:
            prefix += f"{pattern.model._meta.app_label}/{pattern.model._meta.model_name}/"
        return [
            prefix + fill(pattern.route, dict(zip(names, combination, strict=True)))
            for combination in product(*(values[n] for n in names))
        ]


def post_action(client: Client, action: str, pks: list[int], **extra: str) -> HttpResponse:
    """An admin action on the threads list, as its form sends it (`post="yes"`: confirmed)."""
    url = reverse("admin:migrations_app_thread_changelist")
    data = {"action": action, "_selected_action": [str(pk) for pk in pks], "index": "0", **extra}
    return client.post(url, data)


def build_world() -> World:
    """A few rows of everything; threads pending (fetched and not), queued, failed, cancelled and
    succeeded, so that every action and every thread-page button has a thread to act on."""
    Assistant.objects.create(
        assistant_id="asst_ladder",
        name="Ladder",
        model="gpt-4o",
        data={"id": "asst_ladder", "object": "assistant", "name": "Ladder", "model": "gpt-4o",
              "instructions": "Be brief.", "tools": [], "created_at": 1, "metadata": {}},
    )  # fmt: skip
    bundles = [
        {
            "thread": source_thread(f"thread_ladder_{state}"),
            "messages": [source_message(f"msg_ladder_{state}", f"thread_ladder_{state}", "Hi")],
            "runs": [],
            "run_steps": [],
        }
        for state in ("pending", "queued", "failed", "cancelled", "succeeded", "synced")
    ]
    intake.store_bundles(bundles)
    Thread.objects.create(thread_id="thread_ladder_unfetched")
    RunStep.objects.create(
        thread=Thread.objects.get(thread_id="thread_ladder_pending"),
        step_id="step_ladder",
        run_id="run_ladder",
        created_at=1,
        data={"id": "step_ladder", "object": "thread.run.step", "type": "tool_calls",
              "run_id": "run_ladder", "step_details": {"type": "tool_calls", "tool_calls": []}},
    )  # fmt: skip
    for state in ("queued", "failed", "cancelled", "succeeded"):
        Thread.objects.filter(thread_id=f"thread_ladder_{state}").update(status=state)
    Thread.objects.filter(thread_id="thread_ladder_failed").update(
        error_kind="transient", **error("The server had an error (HTTP 500).")
    )
    succeeded = Thread.objects.get(thread_id="thread_ladder_succeeded")
    Conversation.objects.create(thread=succeeded, conversation_id="conv_ladder", items_committed=1)
    # A second migrated thread: re-migrate and sync each take one.
    synced = Thread.objects.get(thread_id="thread_ladder_synced")
    Thread.objects.filter(pk=synced.pk).update(status="succeeded", conversation_id="conv_synced")
    Conversation.objects.create(thread=synced, conversation_id="conv_synced", items_committed=1)
    Attempt.objects.create(thread=succeeded, action="migrate", outcome="succeeded")
    batch = ImportBatch.objects.create(source="csv", filename="ids.csv", status="done")
    BulkAction.objects.create(
        action="retry", selection="status__exact=failed", eligible=120, done=40, status="running"
    )
    now = timezone.now()
    Task.objects.create(
        id="a" * 32, name="ladder-success", func="math.floor", args=(1.5,), kwargs={},
        started=now, stopped=now, success=True, result=1,
    )  # fmt: skip
    Task.objects.create(
        id="b" * 32, name="ladder-failure", func="math.floor", args=("x",), kwargs={},
        started=now, stopped=now, success=False, result="TypeError",
    )  # fmt: skip
    OrmQ.objects.create(key="console", payload="ladder", lock=None)
    if not Schedule.objects.exists():
        Schedule.objects.create(func="math.floor", args="1", schedule_type=Schedule.MINUTES)
    api_tokens.create_token("Ladder app")
    Group.objects.get_or_create(name="ladder-group")
    User.objects.get_or_create(username="ladder-user")
    objects = {
        model: model._default_manager.order_by("pk").first() for model in registered_models()
    }
    objects[Thread] = succeeded
    objects[ImportBatch] = batch
    return World(objects=objects, threads=list(Thread.objects.order_by("pk")))

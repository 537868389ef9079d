"""The threads list's "continuation" filter: the readiness flags (readiness.py)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from migrations_app import readiness
from migrations_app.models import Thread

RETIRES = "retires-"


class ContinuationFilter(admin.SimpleListFilter):
    title = "continuation"
    parameter_name = "continuation"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Thread]
    ) -> list[tuple[str, str]]:
        choices = [("exceeds", 'Exceeds the context (needs truncation="auto")')]
        choices += [(RETIRES + r.key, r.phrase()) for r in readiness.retirements()]
        choices.append(("uncounted", "Migrated, tokens not counted yet"))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Thread]) -> QuerySet[Thread]:
        value = self.value() or ""
        if value == "exceeds":
            return queryset.filter(pk__in=readiness.exceeding_threads().values("pk"))
        if value == "uncounted":
            return queryset.filter(pk__in=readiness.uncounted().values("thread_id"))
        if value.startswith(RETIRES):
            day = value.removeprefix(RETIRES)
            pks = [pk for r in readiness.retirements() if r.key == day for pk in r.assistant_pks]
            return queryset.filter(assistant_id__in=pks)
        return queryset

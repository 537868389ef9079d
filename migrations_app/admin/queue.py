"""django-q2's task pages, with its "resubmit" action behind a permission.

As django-q2 ships them, any staff user who may merely view tasks is offered "Resubmit selected
tasks to queue" and may run it: re-queue any task (an import, a migration group) blindly, and for
failures delete the record. The engine never re-runs a task blindly (README "Workers and tuning"),
so resubmitting is kept for those who may change task records (superusers by default); operators
retry threads from the threads list instead.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django_q import admin as q_admin
from django_q.models import Failure, Success


@admin.action(description=q_admin.resubmit_task.short_description, permissions=["change"])
def resubmit_task(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    q_admin.resubmit_task(modeladmin, request, queryset)


class SuccessAdmin(q_admin.TaskAdmin):
    actions = [resubmit_task]


class FailureAdmin(q_admin.FailAdmin):
    actions = [resubmit_task]


OURS: list[tuple[type[Model], type[admin.ModelAdmin[Any]]]] = [
    (Success, SuccessAdmin),
    (Failure, FailureAdmin),
]
for model, model_admin in OURS:
    admin.site.unregister(model)
    admin.site.register(model, model_admin)

"""The dashboard's "Live source" card: the syncs waiting, the diverged threads and, when the source
is Azure, the days left before its classic agents stop answering (sync.py)."""

from typing import Any

from django import template
from django.conf import settings
from django.db.models import Count
from django.urls import reverse

from migrations_app import connections, sync
from migrations_app.models import ImportBatch

register = template.Library()


@register.simple_tag
def sync_status() -> dict[str, Any]:
    threads = reverse("admin:migrations_app_thread_changelist")
    source = connections.source()
    waiting, diverged = sync.waiting_for_sync(), sync.diverged_count()
    labels = dict(ImportBatch.Cutover.choices)
    batches = [
        (labels[cutover].split(":")[0].lower(), count)
        for cutover, count in ImportBatch.objects.values_list("cutover")
        .annotate(count=Count("pk"))
        .order_by("cutover")
    ]
    return {
        "shown": not source.is_sandbox or waiting or diverged or settings.SYNC_EVERY_MINUTES,
        "azure": source.is_azure,
        "days_left": sync.days_left(),
        "waiting": waiting,
        "waiting_url": f"{threads}?status__in=queued,running",
        "diverged": diverged,
        "diverged_url": f"{threads}?diverged=yes",
        "every": settings.SYNC_EVERY_MINUTES,
        "batches": batches,
    }

"""Assistants, import batches, the dashboard and the read-only mirror and history."""

import os
import tempfile

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from migrations_app import intake, search
from migrations_app.admin import display, notices
from migrations_app.admin.pages import viewable_object
from migrations_app.conversion import responses_config
from migrations_app.models import (
    Assistant,
    Attempt,
    Conversation,
    ImportBatch,
    Message,
    RunStep,
)

INLINE_IMPORT_LIMIT = 1_000_000  # bytes; larger uploads are processed by a worker


class ReadOnlyAdmin(admin.ModelAdmin):
    """Mirror and history rows are records: staff read them, nobody edits them here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ThreadRecordAdmin(ReadOnlyAdmin):
    """Rows that belong to a thread: big tables, so no full count and no thread dropdown."""

    list_select_related = ["thread"]
    raw_id_fields = ["thread"]
    show_full_result_count = False


@admin.register(Attempt)
class AttemptAdmin(ThreadRecordAdmin):
    list_display = [
        display.time_column("started_at", "started"),
        "thread",
        "action",
        "outcome",
        "who",
        display.count_column("attempt_number", "attempt"),
        "error_kind",
        display.count_column("http_status", "HTTP"),
        "request_id",
        "conversation_id",
    ]
    list_filter = ["action", "outcome", "error_kind"]
    list_select_related = ["thread", "actor"]
    raw_id_fields = ["thread", "actor"]
    search_fields = ["=thread__thread_id", "=request_id", "=conversation_id"]


@admin.register(Conversation)
class ConversationAdmin(ThreadRecordAdmin):
    list_display = [
        "conversation_id",
        "thread",
        display.count_column("items_committed", "items"),
        display.count_column("verified_item_count", "verified items"),
        display.time_column("verified_at", "verified"),
        display.time_column("replaced_at", "replaced"),
        display.time_column("created_at", "created"),
    ]
    search_fields = ["conversation_id", "thread__thread_id"]
    search_help_text = "A conversation id or a thread id, or the start of one (prefix optional)."

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        return search.search_conversations(queryset, search_term), False


@admin.register(Message)
class MessageAdmin(ThreadRecordAdmin):
    list_display = ["message_id", "thread", "role", "created_at", "position"]
    search_fields = ["=message_id", "=thread__thread_id"]


@admin.register(RunStep)
class RunStepAdmin(ThreadRecordAdmin):
    list_display = ["step_id", "run_id", "thread", "created_at"]
    search_fields = ["=step_id", "=run_id"]


@admin.register(Assistant)
class AssistantAdmin(ReadOnlyAdmin):
    list_display = ["name", "assistant_id", "model", "tool_count", "synced_at"]
    search_fields = ["name", "=assistant_id", "model"]

    @admin.display(description="tools")
    def tool_count(self, obj):
        return len(obj.data.get("tools") or [])

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        assistant = viewable_object(self, request, object_id)
        config, warnings = responses_config(assistant.data)
        context = {
            **self.admin_site.each_context(request),
            "title": str(assistant),
            "opts": self.model._meta,
            "original": assistant,
            "assistant": assistant,
            "config": config,
            "warnings": warnings,
        }
        return TemplateResponse(request, "admin/migrations_app/assistant/compare.html", context)


class ImportForm(forms.Form):
    ids_file = forms.FileField(
        required=False,
        label="CSV or text file of thread ids",
        help_text="A CSV with a thread_id column, or one id per line.",
    )
    pasted = forms.CharField(
        required=False,
        label="…or paste thread ids",
        help_text="One id per line.",
        widget=forms.Textarea(attrs={"rows": 6, "class": "vLargeTextField"}),
    )
    export_file = forms.FileField(
        required=False,
        label="Export file",
        help_text="A .jsonl (one thread per line) or a .zip of a directory or .jsonl export.",
    )

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:  # a field's own error (an empty file) says it better, and only once
            return data
        given = [k for k in ("ids_file", "pasted", "export_file") if data.get(k)]
        if len(given) != 1:
            raise forms.ValidationError("Give exactly one: an id file, pasted ids, or an export.")
        export = data.get("export_file")
        if export and not export.name.endswith((".jsonl", ".zip")):
            raise forms.ValidationError("An export must be a .jsonl or a .zip file.")
        return data


@admin.register(ImportBatch)
class ImportBatchAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "source",
        "status",
        display.count_column("new_count", "new"),
        display.count_column("duplicate_count", "duplicates"),
        display.count_column("invalid_count", "invalid"),
        display.count_column("skipped_count", "skipped"),
        "created_by",
        display.time_column("created_at", "created"),
    ]
    list_filter = ["source", "status"]
    list_select_related = ["created_by"]
    readonly_fields = [
        "source",
        "filename",
        "created_by",
        "created_at",
        "finished_at",
        "status",
        "new_count",
        "duplicate_count",
        "invalid_count",
        "skipped_count",
        "error_lines",
    ]
    exclude = ["errors"]

    @admin.display(description="errors")
    def error_lines(self, obj: ImportBatch) -> str:
        rows = [format_html("<li>{}</li>", display.import_error_text(e)) for e in obj.errors[:500]]
        if not rows:
            return "—"
        return format_html("<ul>{}</ul>", format_html("".join(["{}"] * len(rows)), *rows))

    def has_change_permission(self, request, obj=None):
        return False

    def has_import_permission(self, request):
        return request.user.has_perm("migrations_app.import_threads")

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("new/", wrap(self.import_view), name="migrations_app_importbatch_import"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra = {"can_import": self.has_import_permission(request)}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = ImportForm(request.POST, request.FILES) if request.method == "POST" else ImportForm()
        if request.method == "POST" and form.is_valid():
            batch = start_import(form.cleaned_data, request.user)
            text, failed = notices.import_done(batch)
            self.message_user(request, text, messages.ERROR if failed else messages.SUCCESS)
            return HttpResponseRedirect(
                reverse("admin:migrations_app_importbatch_change", args=[batch.pk])
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Import threads",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/migrations_app/importbatch/import.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        batch = self.get_object(request, object_id)
        running = batch is not None and batch.status in (
            ImportBatch.Status.PENDING,
            ImportBatch.Status.RUNNING,
        )
        extra = {"refresh_seconds": 2 if running else None}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})


def start_import(data, user):
    """Small inputs are imported now; large uploads go to a worker with progress on the batch."""
    if data.get("pasted"):
        batch = ImportBatch(source=ImportBatch.Source.PASTE, filename="pasted ids", created_by=user)
        try:
            return intake.import_thread_ids(data["pasted"].splitlines(), batch=batch)
        except intake.IntakeError:
            return batch
    upload = data.get("ids_file") or data.get("export_file")
    kind = "ids" if data.get("ids_file") else "export"
    path = _save_upload(upload)
    if upload.size <= INLINE_IMPORT_LIMIT:
        from migrations_app.tasks import import_file

        return ImportBatch.objects.get(pk=import_file(kind, path, upload.name, user.pk))
    from django_q.tasks import async_task

    batch = ImportBatch.objects.create(
        source=ImportBatch.Source.CSV if kind == "ids" else ImportBatch.Source.EXPORT,
        filename=upload.name,
        created_by=user,
    )
    async_task(
        "migrations_app.tasks.import_file",
        kind,
        path,
        upload.name,
        user.pk,
        batch.pk,
        group=f"import {batch.pk}",
    )
    return batch


def _save_upload(upload):
    folder = os.path.join(settings.UPLOAD_DIR, timezone.now().strftime("%Y%m%d"))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(upload.name)[1]
    handle, path = tempfile.mkstemp(dir=folder, suffix=suffix)
    with os.fdopen(handle, "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    return path

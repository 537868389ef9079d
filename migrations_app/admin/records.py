"""Assistants, import batches, bulk actions and the read-only mirror and history."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from migrations_app import coverage, intake, search, sync
from migrations_app.admin import display, notices
from migrations_app.admin.pages import ObjectPageAdmin, admin_page, staff_user
from migrations_app.conversion import responses_config
from migrations_app.intake import uploads
from migrations_app.models import (
    Assistant,
    Attempt,
    BulkAction,
    Conversation,
    ImportBatch,
    Message,
    RunStep,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Mirror and history rows are records: staff read them, nobody edits them here."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
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
class AssistantAdmin(ObjectPageAdmin, ReadOnlyAdmin):
    list_display = ["name", "assistant_id", "model", "tool_count", "synced_at"]
    search_fields = ["name", "=assistant_id", "model"]

    @admin.display(description="tools")
    def tool_count(self, obj: Assistant) -> int:
        return len(obj.data.get("tools") or [])

    # --- "Sync assistants": copy every assistant from the source API --------------------------
    def has_sync_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("migrations_app.sync_assistants")

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("sync/", wrap(self.sync_view), name="migrations_app_assistant_sync"),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {
            "can_sync": self.has_sync_permission(request) and intake.source_configured(),
            "source_configured": intake.source_configured(),
        }
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def sync_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or not self.has_sync_permission(request):
            raise PermissionDenied
        started = timezone.now()
        level, message = notices.assistants_synced(intake.sync_assistants())
        self.message_user(request, message, level)
        synced = Assistant.objects.filter(synced_at__gte=started)
        LogEntry.objects.log_actions(
            staff_user(request).pk, synced, CHANGE, "Synced from the source"
        )
        return HttpResponseRedirect(reverse("admin:migrations_app_assistant_changelist"))

    object_page_template = "admin/migrations_app/assistant/compare.html"

    def object_page_context(self, request: HttpRequest, obj: Assistant) -> dict[str, Any]:
        config, warnings = responses_config(obj.data)
        return {"assistant": obj, "config": config, "warnings": warnings}


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
        help_text=(
            "A .jsonl (one thread per line) or a .zip of an export directory, in the console's "
            "own layout or the public exporter's (assistants-thread-export/v1)."
        ),
    )

    def __init__(self, *args: Any, refused: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = refused or {}  # uploads skipped as they arrived: over their size limit

    def clean_ids_file(self) -> Any:
        return self._within_limit("ids_file", uploads.IDS)

    def clean_export_file(self) -> Any:
        export = self._within_limit("export_file", uploads.EXPORT)
        if export and not export.name.endswith((".jsonl", ".zip")):
            raise forms.ValidationError("An export must be a .jsonl or a .zip file.")
        return export

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        given = [k for k in ("ids_file", "pasted", "export_file") if data.get(k)]
        given += [k for k in ("ids_file", "export_file") if k in self.errors]
        if len(given) != 1:
            raise forms.ValidationError("Give exactly one: an id file, pasted ids, or an export.")
        return data

    def _within_limit(self, field: str, kind: str) -> Any:
        if field in self.refused:
            raise forms.ValidationError(self.refused[field])
        upload = self.cleaned_data.get(field)
        if upload and (problem := uploads.size_problem(kind, upload.name, upload.size)):
            raise forms.ValidationError(problem)
        return upload


@admin.register(ImportBatch)
class ImportBatchAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "source",
        "status",
        display.count_column("new_count", "new"),
        display.count_column("duplicate_count", "already known"),
        display.count_column("invalid_count", "invalid"),
        display.count_column("skipped_count", "skipped"),
        display.count_column("fetch_queued", "fetches"),
        "created_by",
        display.time_column("created_at", "created"),
    ]
    list_filter = ["source", "status"]
    list_select_related = ["created_by"]
    # The refreshing change form, with the batch's coverage (_coverage.html) after its fields.
    change_form_template = "admin/migrations_app/importbatch/change_form.html"
    readonly_fields = [
        "source",
        "filename",
        "layout_display",
        "created_by",
        "created_at",
        "finished_at",
        "status",
        "new_display",
        "known_display",
        "invalid_display",
        "skipped_display",
        "threads_display",
        "fetch_display",
        "not_exported_display",
        "cutover_display",
        "error_lines",
        "warning_lines",
    ]
    exclude = [
        "errors",
        "warnings",
        "started_at",
        "upload_name",
        "fetch_queued",
        "cutover",
        "cutover_changed_at",
        "layout",
        "manifest",
        "not_exported_count",
        "new_count",
        "duplicate_count",
        "invalid_count",
        "skipped_count",
    ]

    @admin.display(description="layout")
    def layout_display(self, obj: ImportBatch) -> str:
        if obj.source != ImportBatch.Source.EXPORT:
            return "—"
        said = obj.manifest or {}
        if not said:
            names = {"own": "the console's own layout"}
            return ", ".join(names.get(n, n) for n in obj.layout.split(", ") if n) or "—"
        parts = [
            f"exported {said['exported_at']}" if said.get("exported_at") else "",
            f"by version {said['script_version']}" if said.get("script_version") else "",
            f"from {said['endpoint']}" if said.get("endpoint") else "",
            f"({said['base_url']})" if said.get("base_url") else "",
        ]
        counts = [
            f"{said[key]} {label}"
            for key, label in (
                ("threads_requested", "requested"),
                ("threads_exported", "exported"),
                ("threads_failed", "failed"),
                ("assistants_count", "assistants"),
            )
            if said.get(key) is not None
        ]
        return format_html(
            '<span id="batch-layout">{}: {}; the manifest counts {}</span>',
            obj.layout,
            " ".join(p for p in parts if p),
            ", ".join(counts) or "nothing",
        )

    @admin.display(description="not in the export")
    def not_exported_display(self, obj: ImportBatch) -> str:
        if not obj.not_exported_count:
            return "—" if obj.source != ImportBatch.Source.EXPORT else "0"
        threads = reverse("admin:migrations_app_thread_changelist")
        return format_html(
            '<span id="not-exported">{} thread{} the exporter could not read: <a href="{}?'
            'batch={}&amp;error_kind__exact=not_exported">registered as failed</a> where '
            "nothing better was known (any kept as they were are named under “changed on the way "
            "in”)</span>",
            obj.not_exported_count,
            "" if obj.not_exported_count == 1 else "s",
            threads,
            obj.pk,
        )

    # --- the batch page: what it did, each count in words, and links to its threads --------------
    @admin.display(description="new threads")
    def new_display(self, obj: ImportBatch) -> str:
        return f"{obj.new_count:,}"

    @admin.display(description="already known")
    def known_display(self, obj: ImportBatch) -> str:
        if not obj.duplicate_count:
            return "0"
        if obj.source == ImportBatch.Source.EXPORT:
            return f"{obj.duplicate_count:,}: their mirrors were updated from this export"
        return f"{obj.duplicate_count:,}: registered before, left in the batch that first had them"

    @admin.display(description="invalid")
    def invalid_display(self, obj: ImportBatch) -> str:
        if not obj.invalid_count:
            return "0"
        what = "bundle" if obj.source == ImportBatch.Source.EXPORT else "line"
        plural = "s" if obj.invalid_count != 1 else ""
        return f"{obj.invalid_count:,} {what}{plural}, each listed under errors"

    @admin.display(description="kept as they were")
    def skipped_display(self, obj: ImportBatch) -> str:
        if not obj.skipped_count:
            return "0"
        return f"{obj.skipped_count:,}: running or uploading, so their mirrors were not replaced"

    @admin.display(description="threads")
    def threads_display(self, obj: ImportBatch) -> str:
        return format_html(
            '<a href="{}" id="batch-threads">every thread of this batch</a>', _batch_threads(obj)
        )

    @admin.display(description="errors")
    def error_lines(self, obj: ImportBatch) -> str:
        return _report_lines(obj.errors)

    @admin.display(description="changed on the way in")
    def warning_lines(self, obj: ImportBatch) -> str:
        return _report_lines(obj.warnings)

    @admin.display(description="fetch from source")
    def fetch_display(self, obj: ImportBatch) -> str:
        if not obj.fetch_queued:
            if obj.source == ImportBatch.Source.EXPORT:
                return "Not needed: an export holds the messages."
            if not intake.source_configured():
                return "No source API is configured: load an export that holds these threads."
            return "No fetch queued: fetch the threads from the threads list, or load an export."
        counts = intake.fetch_progress(obj)
        links = format_html_join(
            ", ",
            '<a href="{}&fetch={}" class="fetch-{}"><b>{}</b> {}</a>',
            (
                (_batch_threads(obj), outcome, outcome, f"{counts[outcome]:,}", words)
                for outcome, words in FETCH_OUTCOME_WORDS
            ),
        )
        return format_html(
            '<span id="fetch-progress">{} fetch task{} queued: {}{}</span>',
            f"{obj.fetch_queued:,}",
            "" if obj.fetch_queued == 1 else "s",
            links,
            " (this page refreshes until none wait)" if counts["waiting"] else ".",
        )

    @admin.display(description="cutover")
    def cutover_display(self, obj: ImportBatch) -> str:
        """Where the batch stands in the cutover, and the next step (sync.py)."""
        said = obj.get_cutover_display()
        next_step = reverse("admin:migrations_app_importbatch_cutover", args=[obj.pk])
        if obj.cutover == ImportBatch.Cutover.LIVE:
            return format_html(
                '<span id="cutover">{}</span> — <a href="{}">start the final sync</a> once the '
                "application has stopped writing to these threads",
                said,
                next_step,
            )
        if obj.cutover == ImportBatch.Cutover.FINAL_SYNC:
            pending = sync.pending_in(obj)
            if pending:
                return format_html(
                    '<span id="cutover">{}</span> — {} thread{} still syncing (this page '
                    "refreshes until none are)",
                    said,
                    f"{pending:,}",
                    "s" if pending != 1 else "",
                )
            return format_html(
                '<span id="cutover">{}</span> — done: <a href="{}">cut over</a>',
                said,
                next_step,
            )
        return format_html('<span id="cutover">{}</span> ({})', said, obj.cutover_changed_at)

    def has_import_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("migrations_app.import_threads")

    def has_sync_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("migrations_app.sync_thread")

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            # CSRF is checked inside, once the upload size limits are in place.
            path(
                "new/",
                wrap(csrf_exempt(self.import_view)),
                name="migrations_app_importbatch_import",
            ),
            path(
                "<path:object_id>/cutover/",
                wrap(self.cutover_view),
                name="migrations_app_importbatch_cutover",
            ),
            *super().get_urls(),
        ]

    def cutover_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The next step of the batch's cutover, confirmed first: the final sync (staff confirm
        that the application stopped writing), then the cut over (no more syncs)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        batch = self.get_object(request, object_id)
        if batch is None:
            raise Http404("No such import batch.")
        if not self.has_sync_permission(request):
            raise PermissionDenied
        page = reverse("admin:migrations_app_importbatch_change", args=[batch.pk])
        step = sync.CUTOVER_STEPS.get(batch.cutover)
        if request.method == "POST" and request.POST.get("post") == "yes" and step:
            try:
                if step == ImportBatch.Cutover.FINAL_SYNC:
                    queued = sync.start_final_sync(batch, user=staff_user(request))
                    done = (
                        f"Final sync started: {queued:,} migrated threads queued for a last sync."
                    )
                else:
                    sync.cut_over(batch)
                    done = "Cut over: no more syncs for this batch; its mapping is final."
            except sync.CutoverRefused as refused:
                self.message_user(request, f"Not done: {refused}.", messages.ERROR)
                return HttpResponseRedirect(page)
            LogEntry.objects.log_actions(
                staff_user(request).pk, [batch], CHANGE, change_message=f"cutover: {step}"
            )
            self.message_user(request, done, messages.SUCCESS)
            return HttpResponseRedirect(page)
        return admin_page(
            self,
            request,
            "admin/migrations_app/importbatch/cutover.html",
            f"{batch}: cutover",
            batch=batch,
            step=step,
            migrated=sync.syncable(batch.threads.all()).count(),
            pending=sync.pending_in(batch),
            batch_url=page,
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {"can_import": self.has_import_permission(request)}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_import_permission(request):
            raise PermissionDenied  # before the body is read
        limiter = uploads.LimitHandler(request)
        # First of the handlers, before anything reads the body.
        request.upload_handlers = [limiter, *request.upload_handlers]
        return csrf_protect(self._import_view)(request, limiter)

    def _import_view(self, request: HttpRequest, limiter: uploads.LimitHandler) -> HttpResponse:
        form = ImportForm()
        if request.method == "POST":
            form = ImportForm(request.POST, request.FILES, refused=limiter.refused)
            if form.is_valid():
                batch = uploads.start_import(
                    staff_user(request),
                    pasted=form.cleaned_data["pasted"],
                    ids_file=form.cleaned_data["ids_file"],
                    export_file=form.cleaned_data["export_file"],
                )
                level, message = notices.import_done(batch, intake.source_configured())
                self.message_user(request, message, level)
                return HttpResponseRedirect(
                    reverse("admin:migrations_app_importbatch_change", args=[batch.pk])
                )
        return admin_page(
            self,
            request,
            "admin/migrations_app/importbatch/import.html",
            "Import threads",
            form=form,
            source_configured=intake.source_configured(),
            limits={
                "ids": uploads.size_limit(uploads.IDS) >> 20,
                "export": uploads.size_limit(uploads.EXPORT) >> 20,
            },
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        intake.sweep_stopped_imports()  # a batch whose worker died says so, here too
        batch = self.get_object(request, object_id)
        waiting = False
        if batch is not None and batch.fetch_queued:
            waiting = intake.fetch_progress(batch)["waiting"] > 0
        running = batch is not None and not batch.is_finished
        syncing = (
            batch is not None
            and batch.cutover == ImportBatch.Cutover.FINAL_SYNC
            and sync.pending_in(batch) > 0
        )
        extra: dict[str, Any] = {"refresh_seconds": 2 if running or waiting or syncing else None}
        if batch is not None and self.has_view_permission(request, batch):
            extra.update(
                coverage=coverage.for_batch(batch),
                coverage_batch=batch,
                coverage_query=f"&batch={batch.pk}",
                threads_url=reverse("admin:migrations_app_thread_changelist"),
                coverage_csv_url=reverse("admin:migrations_app_thread_coverage_csv"),
            )
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})


FETCH_OUTCOME_WORDS = [
    ("fetched", "fetched"),
    ("not_found", "not found at the source"),
    ("failed", "failed"),
    ("waiting", "waiting"),
]


def _batch_threads(batch: ImportBatch) -> str:
    return f"{reverse('admin:migrations_app_thread_changelist')}?import_batch__id__exact={batch.pk}"


def _report_lines(entries: list[dict]) -> str:
    if not entries:
        return "—"
    rows = format_html_join(
        "", "<li>{}</li>", ((display.import_error_text(e),) for e in entries[:500])
    )
    more = format_html("<li>… and {} more</li>", len(entries) - 500) if len(entries) > 500 else ""
    return format_html('<ul class="report">{}{}</ul>', rows, more)


@admin.register(BulkAction)
class BulkActionAdmin(ReadOnlyAdmin):
    """An action on many threads, applied by a worker: its progress, read-only."""

    list_display = [
        "__str__",
        "status",
        display.count_column("eligible", "threads"),
        display.count_column("done", "done"),
        "requested_by",
        display.time_column("created_at", "created"),
        display.time_column("finished_at", "finished"),
    ]
    list_filter = ["action", "status"]
    list_select_related = ["requested_by"]
    change_form_template = "admin/migrations_app/refreshing_change_form.html"
    fields = readonly_fields = (
        "action",
        "selected_threads",
        "requested_by",
        "status",
        "progress",
        "skipped_threads",
        "error",
        "created_at",
        "finished_at",
        "task_group",
    )

    @admin.display(description="skipped")
    def skipped_threads(self, obj: BulkAction) -> str:
        """Every selected thread it did not act on, by reason (known once it is done)."""
        if not obj.is_finished:
            return "known when it is done"
        if not obj.skipped:
            return "none"
        return format_html(
            '<ul id="bulk-skipped">{}</ul>',
            format_html_join(
                "",
                "<li>{}: {}</li>",
                ((f"{count:,}", reason) for reason, count in sorted(obj.skipped.items())),
            ),
        )

    @admin.display(description="progress")
    def progress(self, obj: BulkAction) -> str:
        return format_html(
            '<span id="bulk-progress">{} of {} threads acted on{}</span>',
            f"{obj.done:,}",
            f"{obj.eligible:,}",
            "" if obj.is_finished else " (this page refreshes until it is done)",
        )

    @admin.display(description="threads selected")
    def selected_threads(self, obj: BulkAction) -> str:
        threads = reverse("admin:migrations_app_thread_changelist")
        return format_html(
            '<a href="{}?{}">the threads list, filtered as it was</a> (threads the action no '
            "longer applies to when their page is reached are skipped)",
            threads,
            obj.selection,
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        bulk = self.get_object(request, object_id)
        extra = {"refresh_seconds": 2 if bulk is not None and not bulk.is_finished else None}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

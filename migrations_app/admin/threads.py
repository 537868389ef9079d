"""The threads changelist, its confirmed bulk actions, the thread page and the mapping export."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from migrations_app import actions, coverage, dashboard, intake, mapping, search, states
from migrations_app.actions import Plan
from migrations_app.admin import display, notices
from migrations_app.admin.continuation import ContinuationFilter
from migrations_app.admin.pages import (
    ObjectPageAdmin,
    admin_page,
    require_view_permission,
    staff_user,
)
from migrations_app.conversion import Conversion
from migrations_app.intake.batches import FETCH_OUTCOMES
from migrations_app.models import (
    BatchMember,
    BulkAction,
    ImportBatch,
    Thread,
    ThreadStatus,
)
from migrations_app.preview import ThreadNotMirrored, preview_thread
from migrations_app.thread_page import thread_page

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    class Mirrored(TypedDict):
        mirrored: bool

    Listed = WithAnnotations[Thread, Mirrored]  # a row of the list (see get_queryset)

COUNT_LIMIT = 10_000


class CappedCountPaginator(Paginator):
    """Never COUNT(*) ten million rows: the table's estimate when unfiltered, else a count
    that stops at COUNT_LIMIT."""

    object_list: QuerySet[Thread]

    @cached_property
    def count(self) -> int:
        query = self.object_list.query
        if not query.where and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE relname = %s",
                    [Thread._meta.db_table],
                )
                row = cursor.fetchone()
            estimate = int(row[0]) if row else 0
            if estimate > COUNT_LIMIT:
                return estimate
        return self.object_list.order_by()[: COUNT_LIMIT + 1].count()


class ThreadChangeList(ChangeList):
    """The list never loads the source JSON: whether it is there is all a row shows."""

    def get_queryset(
        self, request: HttpRequest, exclude_parameters: list[str | None] | None = None
    ) -> QuerySet[Thread]:
        return super().get_queryset(request, exclude_parameters).defer("data", "export_info")


class HasWarningsFilter(admin.SimpleListFilter):
    title = "warnings"
    parameter_name = "warnings"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Thread]
    ) -> list[tuple[str, str]]:
        return [("yes", "Has warnings"), ("no", "No warnings")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Thread]) -> QuerySet[Thread]:
        if self.value() == "yes":
            return queryset.filter(warning_count__gt=0)
        if self.value() == "no":
            return queryset.filter(warning_count=0)
        return queryset


class DivergedFilter(admin.SimpleListFilter):
    """Migrated threads whose source no longer matches what was migrated (sync.py)."""

    title = "source"
    parameter_name = "diverged"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Thread]
    ) -> list[tuple[str, str]]:
        return [("yes", "Diverged from the migrated thread")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Thread]) -> QuerySet[Thread]:
        return queryset.exclude(diverged="") if self.value() == "yes" else queryset


class FetchFilter(admin.SimpleListFilter):
    """Where a thread stands with its fetch, as an import batch's page counts it (the counts
    link here)."""

    title = "fetch"
    parameter_name = "fetch"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Thread]
    ) -> list[tuple[str, str]]:
        return [
            ("fetched", "Fetched or loaded"),
            ("waiting", "Not fetched yet"),
            ("not_found", "Not found at the source"),
            ("failed", "Fetch failed otherwise"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Thread]) -> QuerySet[Thread]:
        condition = FETCH_OUTCOMES.get(self.value() or "")
        return queryset.filter(condition) if condition is not None else queryset


class CoverageFilter(admin.SimpleListFilter):
    """The coverage figures' differences (coverage.py), each backed by a partial index."""

    title = "coverage"
    parameter_name = "coverage"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Thread]
    ) -> list[tuple[str, str]]:
        return [(d.kind, d.label) for d in coverage.DIFFERENCES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Thread]) -> QuerySet[Thread]:
        difference = coverage.BY_KIND.get(self.value() or "")
        return queryset.filter(difference.condition) if difference else queryset


class NamedByBatchFilter(admin.SimpleListFilter):
    """Every thread an import batch named (its id list or its export), whether it registered
    it or found it registered: the batch's coverage figures link here."""

    title = "named by import batch"
    parameter_name = "batch"
    SHOWN = 15

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Thread]
    ) -> list[tuple[str, str]]:
        batches = list(ImportBatch.objects.order_by("-created_at")[: self.SHOWN])
        chosen = self.value()
        if chosen and chosen.isdigit() and all(str(b.pk) != chosen for b in batches):
            batches += list(ImportBatch.objects.filter(pk=int(chosen)))
        return [(str(batch.pk), str(batch)) for batch in batches]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Thread]) -> QuerySet[Thread]:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(coverage.named_by(int(value)))
        return queryset


def status_badge(status: str, label: str) -> SafeString:
    """Coloured by console.css (`.status-<status>`): no style attribute, which the
    Content-Security-Policy forbids."""
    return format_html('<span class="status-badge status-{}">{}</span>', status, label)


ActionFunction = Callable[["ThreadAdmin", HttpRequest, QuerySet[Thread]], HttpResponse | None]


def _action(name: str, description: str, permission: str) -> ActionFunction:
    """An admin action in the shape of delete_selected: confirm first, then act."""

    def run(
        modeladmin: ThreadAdmin, request: HttpRequest, queryset: QuerySet[Thread]
    ) -> HttpResponse | None:
        return modeladmin.confirm_and_apply(request, queryset, name)

    run.__name__ = f"{name}_selected"
    return admin.action(description=description, permissions=[permission])(run)


@admin.register(Thread)
class ThreadAdmin(ObjectPageAdmin):
    # What staff scan a list for, and no more: each cell is one line; the assistant and the
    # import batch are filters and on the thread page. Widths: console.css.
    list_display = [
        "thread_id",
        "status_display",
        "source_messages",
        "progress",
        "attempts",
        "short_error",
        "conversation",
        display.time_column("updated_at", "updated"),
    ]
    list_filter = [
        "status",
        DivergedFilter,
        "error_kind",
        "assistant",
        "import_batch",
        FetchFilter,
        HasWarningsFilter,
        ContinuationFilter,
        CoverageFilter,
        NamedByBatchFilter,
        ("updated_at", admin.DateFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    ]
    list_select_related = False
    search_fields = ["=thread_id"]
    search_help_text = (
        "A thread or conversation id, or its start (thread_o3lh0z, conv_68a5, or just o3lh0z); "
        "or a metadata value (key=value for an exact key)."
    )
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    raw_id_fields = ["assistant", "import_batch"]
    actions = [
        _action("fetch", "Fetch from source", "fetch"),
        _action("preview", "Preview (dry run)", "view"),
        _action("migrate", "Migrate", "migrate"),
        _action("retry", "Retry failed", "retry"),
        _action("cancel", "Cancel queued", "cancel"),
        _action("remigrate", "Re-migrate into a new conversation", "remigrate"),
        _action("sync", "Sync new messages", "sync"),
    ]

    # --- the list -------------------------------------------------------------------------------
    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        """Fetching is offered only where a source API is configured to fetch from."""
        offered = super().get_actions(request)
        if not intake.source_configured():
            offered.pop("fetch_selected", None)
        return offered

    def get_queryset(self, request: HttpRequest) -> QuerySet[Thread]:
        mirrored = ExpressionWrapper(Q(data__isnull=False), output_field=BooleanField())
        return super().get_queryset(request).annotate(mirrored=mirrored)

    def get_changelist(self, request: HttpRequest, **kwargs: object) -> type[ChangeList]:
        return ThreadChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Thread], search_term: str
    ) -> tuple[QuerySet[Thread], bool]:
        return search.search_threads(queryset, search_term), False

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Thread) -> SafeString:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="messages", ordering="message_count")
    def source_messages(self, obj: Listed) -> int | str:
        if not obj.mirrored:
            return format_html('<span class="quiet">{}</span>', "not fetched")
        return obj.message_count

    @admin.display(description="items")
    def progress(self, obj: Thread) -> str:
        if not obj.items_total:
            return "—"
        return f"{obj.items_committed}/{obj.items_total}"

    @admin.display(description="last error")
    def short_error(self, obj: Thread) -> str:
        return display.one_line(obj.error_message)

    @admin.display(description="conversation", ordering="conversation_id")
    def conversation(self, obj: Thread) -> str:
        return display.id_with_copy(obj.conversation_id, "conversation id")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Thread | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Thread | None = None) -> bool:
        return False

    def _has(self, request: HttpRequest, codename: str) -> bool:
        return request.user.has_perm(f"migrations_app.{codename}")

    def has_fetch_permission(self, request: HttpRequest) -> bool:
        return self._has(request, "fetch_thread")

    def has_migrate_permission(self, request: HttpRequest) -> bool:
        return self._has(request, "migrate_thread")

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return self._has(request, "retry_thread")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return self._has(request, "cancel_thread")

    def has_sync_permission(self, request: HttpRequest) -> bool:
        return self._has(request, "sync_thread")

    def has_remigrate_permission(self, request: HttpRequest) -> bool:
        return self._has(request, "remigrate_thread")

    # --- actions --------------------------------------------------------------------------------
    def confirm_and_apply(
        self, request: HttpRequest, queryset: QuerySet, name: str
    ) -> HttpResponse | None:
        if name == "preview":
            return self.preview_response(request, queryset)
        if name == "fetch" and not intake.source_configured():
            self.message_user(request, NO_SOURCE, messages.ERROR)
            return None
        plan = actions.plan(name, queryset)
        if request.POST.get("post") == "yes" and plan.eligible:
            if plan.eligible > actions.inline_limit(name):
                bulk = self.hand_to_worker(request, queryset, plan)
                self.message_user(request, notices.bulk_started(bulk), messages.SUCCESS)
            else:
                count = self.apply_now(request, queryset, name)
                self.message_user(
                    request, notices.action_done(name, plan.rule.label, count), messages.SUCCESS
                )
            if request.POST.get("return_to") == "dashboard":
                return HttpResponseRedirect(reverse("admin:migrations_app_dashboard"))
            return None
        return admin_page(
            self,
            request,
            "admin/migrations_app/thread/confirm_action.html",
            f"{plan.rule.label}: are you sure?",
            plan=plan,
            action_name=request.POST.get("action", f"{name}_selected"),
            queryset=queryset,
            selected=request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            select_across=request.POST.get("select_across", "0"),
            action_checkbox_name=helpers.ACTION_CHECKBOX_NAME,
            return_to="dashboard" if request.POST.get("return_to") == "dashboard" else "",
        )

    def apply_now(self, request: HttpRequest, queryset: QuerySet[Thread], name: str) -> int:
        """A few threads: acted on inside the request, one log entry each (as Django's own
        actions log)."""

        user = staff_user(request)

        def log(pks: list[int]) -> None:
            LogEntry.objects.log_actions(
                user.pk,
                list(Thread.objects.filter(pk__in=pks).only("pk", "thread_id")),
                CHANGE,
                change_message=f"{name} (console action)",
            )

        count, _ = actions.apply(name, queryset, user=user, on_chunk=log)
        return count

    def hand_to_worker(
        self, request: HttpRequest, queryset: QuerySet[Thread], plan: Plan
    ) -> BulkAction:
        """Many threads: one task applies the action a page at a time, one log entry says who
        asked for what (each thread still gets its own history row)."""
        user = staff_user(request)
        bulk = actions.start_bulk(
            plan.rule.name,
            queryset,
            eligible=plan.eligible,
            user=user,
            selection=request.GET.urlencode(),
        )
        LogEntry.objects.log_actions(
            user.pk,
            [bulk],
            ADDITION,
            change_message=f"{plan.rule.label}: {plan.eligible} threads (console action, "
            "applied by a worker)",
        )
        return bulk

    def preview_response(
        self, request: HttpRequest, queryset: QuerySet[Thread]
    ) -> TemplateResponse:
        previews: list[tuple[Thread, Conversion | None, str | None]] = []
        for thread in queryset[:50]:
            try:
                previews.append((thread, preview_thread(thread), None))
            except ThreadNotMirrored as error:
                previews.append((thread, None, str(error)))
        return admin_page(
            self,
            request,
            "admin/migrations_app/thread/preview.html",
            "Preview (dry run): nothing is sent",
            previews=previews,
            capped=queryset.count() > 50,
        )

    # --- extra pages ----------------------------------------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("mapping.csv", wrap(self.mapping_view), name="migrations_app_thread_mapping"),
            path(
                "coverage.csv",
                wrap(self.coverage_csv_view),
                name="migrations_app_thread_coverage_csv",
            ),
            path("dashboard/", wrap(self.dashboard_view), name="migrations_app_dashboard"),
            path(
                "<path:object_id>/act/<str:name>/",
                wrap(self.act_view),
                name="migrations_app_thread_act",
            ),
            *super().get_urls(),
        ]

    def mapping_view(self, request: HttpRequest) -> StreamingHttpResponse:
        require_view_permission(self, request)
        changelist = self.get_changelist_instance(request)
        threads = changelist.get_queryset(request)
        response = StreamingHttpResponse(mapping.mapping_lines(threads), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="thread-conversation-mapping.csv"'
        return response

    def coverage_csv_view(self, request: HttpRequest) -> StreamingHttpResponse:
        """The threads of the current filter (a coverage difference, a batch) as CSV, with
        what coverage says of each."""
        require_view_permission(self, request)
        changelist = self.get_changelist_instance(request)
        threads = changelist.get_queryset(request)
        kind = request.GET.get("coverage", "")
        batch = request.GET.get("batch", "")
        name = "-".join(
            filter(
                None,
                [
                    "coverage",
                    kind if kind in coverage.BY_KIND else "",
                    f"batch-{batch}" if batch.isdigit() else "",
                ],
            )
        )
        response = StreamingHttpResponse(coverage.csv_lines(threads), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return response

    def act_view(self, request: HttpRequest, object_id: str, name: str) -> HttpResponse:
        """The thread page's buttons: the same confirmation as the bulk actions."""
        if request.method != "POST" or name not in VALID_BUTTONS:
            raise PermissionDenied
        if not getattr(self, f"has_{name}_permission")(request):
            raise PermissionDenied
        thread = self.get_object(request, unquote(object_id))
        if thread is None:
            raise Http404(f"No thread with id “{object_id}”.")
        queryset = Thread.objects.filter(pk=thread.pk)
        response = self.confirm_and_apply(request, queryset, name)
        if response is None:
            return HttpResponseRedirect(
                reverse("admin:migrations_app_thread_change", args=[object_id])
            )
        return response

    object_page_template = "admin/migrations_app/thread/thread_page.html"

    def object_page_context(self, request: HttpRequest, obj: Thread) -> dict[str, Any]:
        source = intake.source_configured()
        stranded = (
            not source
            and obj.data is None
            and obj.status in (ThreadStatus.PENDING, ThreadStatus.CANCELLED)
        )
        return {
            **thread_page(obj, request.GET.get("page")),
            **export_context(obj),
            "buttons": buttons_for(obj, request, self),
            "remedy": states.remedy(obj, source=source),
            # Not mirrored, and nothing to fetch it from: only an export can bring it in.
            "needs_export": stranded,
            "import_url": reverse("admin:migrations_app_importbatch_import"),
            # Queued or running: the status moves on its own; the page follows it.
            "refresh_seconds": (
                5 if obj.status in (ThreadStatus.QUEUED, ThreadStatus.RUNNING) else None
            ),
            "status_badge": status_badge(obj.status, obj.get_status_display()),
        }

    def remedy_for(self, request: HttpRequest, error_kind: str) -> tuple[str, str] | None:
        """(action, button label) that fixes failures of this kind, if the user may act (and,
        for a fetch, if there is a source to fetch from)."""
        action = states.remedy_action(error_kind)
        if not getattr(self, f"has_{action}_permission")(request):
            return None
        if action == "fetch" and not intake.source_configured():
            return None
        return f"{action}_selected", REMEDY_LABELS[action]

    def failure_group(self, request: HttpRequest, group: dict[str, Any]) -> dict[str, Any]:
        """A failure group as the dashboard shows it: its threads' link (exactly the group),
        the remedy button it may offer, or where there is none, what to do instead."""
        query = urlencode(
            {
                "status__exact": ThreadStatus.FAILED,
                "error_kind__exact": group["error_kind"],
                "error_template": group["error_template"],
            }
        )
        remedy = self.remedy_for(request, group["error_kind"])
        fetch_without_source = (
            states.remedy_action(group["error_kind"]) == "fetch" and not intake.source_configured()
        )
        return {
            **group,
            "url": f"{reverse('admin:migrations_app_thread_changelist')}?{query}",
            "remedy": remedy,
            "needs_export": fetch_without_source,
        }

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        require_view_permission(self, request)
        figures = dashboard.figures()
        by_status = {c.status: c.count for c in figures["counts"]}
        active = by_status[ThreadStatus.QUEUED] + by_status[ThreadStatus.RUNNING]
        waiting_tasks = figures["health"].queued_tasks
        return admin_page(
            self,
            request,
            "admin/migrations_app/dashboard.html",
            "Migration dashboard",
            counts=figures["counts"],
            progress=dashboard.progress(figures["counts"]),
            chart=dashboard.chart(figures["per_minute"]),
            failures=[self.failure_group(request, group) for group in figures["failures"]],
            import_url=reverse("admin:migrations_app_importbatch_import"),
            retrying=figures["retrying"],
            retrying_label=dashboard.threads_label(figures["retrying"], dashboard.RETRYING_COUNTED),
            estimate=figures["remaining"],
            health=figures["health"],
            rate=figures["rate"],
            # While work runs the figures move every few seconds; idle, a left-open page still
            # catches up with what others did (a retry from another page, a new import).
            refresh_seconds=5 if active or waiting_tasks else 30,
            active=active,
            threads_url=reverse("admin:migrations_app_thread_changelist"),
            coverage=coverage.for_migration(),
            coverage_csv_url=reverse("admin:migrations_app_thread_coverage_csv"),
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {
            "mapping_url": reverse("admin:migrations_app_thread_mapping"),
            # Actions on many threads a worker is still applying: the rows below change as it
            # goes, and the list says so rather than look as if nothing happened.
            "bulk_in_progress": actions.unfinished_bulk_actions(),
        }
        return super().changelist_view(request, {**(extra_context or {}), **extra})


NO_SOURCE = (
    "No source API is configured (ASSISTANTS_BASE_URL), so there is nothing to fetch from: load "
    "an export that holds these threads instead (Import threads)."
)
REMEDY_LABELS = {
    "retry": "Retry this group",
    "fetch": "Fetch this group again",
    "remigrate": "Re-migrate this group",
}
VALID_BUTTONS = ("fetch", "migrate", "retry", "cancel", "remigrate", "sync")
# After the remedy: what moves the thread on, then taking it off the queue, then a new copy of
# its source data.
BUTTON_ORDER = ("migrate", "retry", "remigrate", "sync", "cancel", "fetch")


@dataclass(frozen=True)
class Button:
    """One of the thread page's actions: the remedy is the primary one; each says what it does."""

    name: str
    label: str
    explanation: str
    primary: bool = False


def explain(name: str, thread: Thread) -> str:
    """What the button does to this thread, in one line."""
    mirrored = thread.data is not None
    if name == "migrate":
        if thread.status == ThreadStatus.FAILED:
            return "Upload it from the mirror into a new conversation; the source is not needed."
        if not mirrored:
            return (
                "Queue it: a worker fetches it from the source, uploads it into a new "
                "conversation and verifies it."
            )
        return "Queue it: a worker uploads it into a new conversation and verifies it."
    if name == "retry":
        if thread.conversation_id:
            return "Resume the upload where it stopped, into the same conversation."
        return "Queue it again; nothing was uploaded yet, so it starts from the first item."
    if name == "fetch":
        if mirrored:
            return (
                "Copy it from the source again, replacing the mirror; if the source does not "
                "answer, the mirror and the state are kept."
            )
        return "Copy its messages from the source into the console."
    if name == "remigrate":
        return (
            "Upload it again into a new conversation; the mapping keeps the current one until "
            "the new upload starts, then it stays in the history."
        )
    if name == "sync":
        return (
            "Check the source for messages added since it was migrated and append them to the "
            "same conversation."
        )
    return (  # cancel
        "Take it off the queue before a worker starts it (a re-migrate or sync not started yet "
        "goes back to succeeded, its conversation kept)."
    )


def buttons_for(thread: Thread, request: HttpRequest, model_admin: ThreadAdmin) -> list[Button]:
    """Only the actions valid for this thread's state, and only for staff allowed to act (a
    fetch, or a migration of a thread not mirrored yet, only where a source is configured); the
    remedy first, as the primary action. Migrate and retry queue a failed or cancelled thread
    alike: only the one that names it is offered (retry for a failed thread, migrate for a
    cancelled one)."""
    source = intake.source_configured()
    applicable = states.applicable_actions(thread.pk)
    if not source:
        applicable.discard("fetch")
        if thread.data is None:  # a worker would have to fetch it first, from nowhere
            applicable -= {"migrate", "retry"}
    if {"migrate", "retry"} <= applicable:
        applicable.discard("migrate" if thread.status == ThreadStatus.FAILED else "retry")
    remedy = states.thread_remedy_action(thread, source=source)
    offered = [
        Button(name, actions.RULES[name].label, explain(name, thread), primary=name == remedy)
        for name in BUTTON_ORDER
        if name in applicable and getattr(model_admin, f"has_{name}_permission")(request)
    ]
    return sorted(offered, key=lambda button: not button.primary)


def export_context(thread: Thread) -> dict[str, Any]:
    """What the thread page says about the thread's place in the lists and exports."""
    info = thread.export_info or {}
    files = sorted(
        ((file_id, meta) for file_id, meta in (info.get("files") or {}).items()),
        key=lambda pair: (str(pair[1].get("filename") or ""), pair[0]),
    )
    # Two index lookups (an OR across both relations would join the batch's every thread).
    batch_pks = set(BatchMember.objects.filter(thread=thread).values_list("batch_id", flat=True))
    if thread.import_batch_id:
        batch_pks.add(thread.import_batch_id)
    named_by = list(ImportBatch.objects.filter(pk__in=batch_pks).order_by("created_at")[:20])
    return {
        "export_info": info,
        "export_files": [{"id": file_id, **meta} for file_id, meta in files],
        "named_by": named_by,
    }

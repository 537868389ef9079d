"""The threads changelist, its confirmed bulk actions, the thread page and the mapping export."""

from __future__ import annotations

from collections.abc import Callable
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
from django.utils.safestring import SafeString

from migrations_app import actions, coverage, dashboard, intake, mapping, search, states
from migrations_app.actions import Plan
from migrations_app.admin import display, notices
from migrations_app.admin.pages import (
    ObjectPageAdmin,
    admin_page,
    require_view_permission,
    staff_user,
)
from migrations_app.conversion import Conversion
from migrations_app.models import (
    BatchMember,
    BulkAction,
    ErrorKind,
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
        "error_kind",
        "assistant",
        "import_batch",
        HasWarningsFilter,
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
    ]

    # --- the list -------------------------------------------------------------------------------
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
        return display.one_line(obj.conversation_id)

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

    def has_remigrate_permission(self, request: HttpRequest) -> bool:
        return self._has(request, "remigrate_thread")

    # --- actions --------------------------------------------------------------------------------
    def confirm_and_apply(
        self, request: HttpRequest, queryset: QuerySet, name: str
    ) -> HttpResponse | None:
        if name == "preview":
            return self.preview_response(request, queryset)
        plan = actions.plan(name, queryset)
        if request.POST.get("post") == "yes" and plan.eligible:
            if plan.eligible > actions.INLINE_LIMIT:
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
        return {
            **thread_page(obj, request.GET.get("page")),
            **export_context(obj),
            "buttons": buttons_for(obj, request, self),
            "remedy": states.remedy(obj),
            # Queued or running: the status moves on its own; the page follows it.
            "refresh_seconds": (
                5 if obj.status in (ThreadStatus.QUEUED, ThreadStatus.RUNNING) else None
            ),
            "status_badge": status_badge(obj.status, obj.get_status_display()),
        }

    def remedy_for(self, request: HttpRequest, error_kind: str) -> tuple[str, str] | None:
        """(action, button label) that fixes failures of this kind, if the user may act."""
        action = states.remedy_offered(error_kind)
        if action is None or not getattr(self, f"has_{action}_permission")(request):
            return None
        return f"{action}_selected", REMEDY_LABELS[action]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        require_view_permission(self, request)
        figures = dashboard.figures()
        by_status = {c.status: c.count for c in figures["counts"]}
        active = by_status[ThreadStatus.QUEUED] + by_status[ThreadStatus.RUNNING]
        return admin_page(
            self,
            request,
            "admin/migrations_app/dashboard.html",
            "Migration dashboard",
            counts=figures["counts"],
            progress=dashboard.progress(figures["counts"]),
            chart=dashboard.chart(figures["per_minute"]),
            failures=[
                {**group, "remedy": self.remedy_for(request, group["error_kind"])}
                for group in figures["failures"]
            ],
            retrying=figures["retrying"],
            retrying_label=dashboard.threads_label(figures["retrying"], dashboard.RETRYING_COUNTED),
            estimate=figures["remaining"],
            health=figures["health"],
            rate=figures["rate"],
            # While work runs the figures move every few seconds; idle, a left-open page still
            # catches up with what others did (a retry from another page, a new import).
            refresh_seconds=5 if active else 30,
            active=active,
            threads_url=reverse("admin:migrations_app_thread_changelist"),
            coverage=coverage.for_migration(),
            coverage_csv_url=reverse("admin:migrations_app_thread_coverage_csv"),
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {"mapping_url": reverse("admin:migrations_app_thread_mapping")}
        return super().changelist_view(request, {**(extra_context or {}), **extra})


REMEDY_LABELS = {
    "retry": "Retry this group",
    "fetch": "Fetch this group again",
    "remigrate": "Re-migrate this group",
}
VALID_BUTTONS = ("fetch", "migrate", "retry", "cancel", "remigrate")


def buttons_for(
    thread: Thread, request: HttpRequest, model_admin: ThreadAdmin
) -> list[tuple[str, str]]:
    """Only the actions valid for this thread's state, and only for staff allowed to act."""
    offered = []
    applicable = states.applicable_actions(thread.pk)
    if thread.error_kind == ErrorKind.NOT_EXPORTED and not intake.source_configured():
        applicable.discard("fetch")  # no source to fetch it from: load an export that holds it
    for name in VALID_BUTTONS:
        if not getattr(model_admin, f"has_{name}_permission")(request):
            continue
        if name in applicable:
            offered.append((name, actions.RULES[name].label))
    return offered


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

"""The threads changelist, its confirmed bulk actions, the thread page and the mapping export."""

import csv

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import ngettext

from migrations_app import actions, dashboard, intake, tasks
from migrations_app.conversion import responses_config
from migrations_app.models import Conversation, Thread, ThreadStatus
from migrations_app.preview import ThreadNotMirrored, preview_thread

COUNT_LIMIT = 10_000


class CappedCountPaginator(Paginator):
    """Never COUNT(*) ten million rows: the table's estimate when unfiltered, else a count
    that stops at COUNT_LIMIT."""

    @cached_property
    def count(self):
        query = self.object_list.query
        if not query.where and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE relname = %s",
                    [Thread._meta.db_table],
                )
                estimate = cursor.fetchone()[0]
            if estimate > COUNT_LIMIT:
                return estimate
        return self.object_list.order_by()[: COUNT_LIMIT + 1].count()


class HasWarningsFilter(admin.SimpleListFilter):
    title = "warnings"
    parameter_name = "warnings"

    def lookups(self, request, model_admin):
        return [("yes", "Has warnings"), ("no", "No warnings")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(warning_count__gt=0)
        if self.value() == "no":
            return queryset.filter(warning_count=0)
        return queryset


STATUS_COLOURS = {
    ThreadStatus.PENDING: "#777",
    ThreadStatus.QUEUED: "#417690",
    ThreadStatus.RUNNING: "#b58900",
    ThreadStatus.SUCCEEDED: "#2e7d32",
    ThreadStatus.FAILED: "#c62828",
    ThreadStatus.CANCELLED: "#555",
}


def status_badge(status, label):
    return format_html(
        '<span class="status-badge" style="background:{}">{}</span>',
        STATUS_COLOURS.get(status, "#777"),
        label,
    )


def _action(name, description, permission):
    """An admin action in the shape of delete_selected: confirm first, then act."""

    def run(modeladmin, request, queryset):
        return modeladmin.confirm_and_apply(request, queryset, name)

    run.__name__ = f"{name}_selected"
    return admin.action(description=description, permissions=[permission])(run)


@admin.register(Thread)
class ThreadAdmin(admin.ModelAdmin):
    list_display = [
        "thread_id",
        "status_display",
        "messages_shown",  # "not fetched" until the mirror holds the thread (Thread.is_mirrored)
        "progress",
        "attempts",
        "short_error",
        "conversation",
        "assistant",
        "import_batch",
        "updated_at",
    ]
    list_filter = [
        "status",
        "error_kind",
        "assistant",
        "import_batch",
        HasWarningsFilter,
        ("updated_at", admin.DateFieldListFilter),
        ("created_at", admin.DateFieldListFilter),
    ]
    list_select_related = ["assistant", "import_batch"]
    search_fields = ["=thread_id"]
    search_help_text = (
        "A thread id (thread_…), a conversation id (conv_…), or a metadata value "
        "(key=value for an exact key)."
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
    def get_queryset(self, request):
        live = Conversation.objects.live().filter(thread=OuterRef("pk")).values("conversation_id")
        return super().get_queryset(request).annotate(live_conversation=Subquery(live[:1]))

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("thread_"):
            return queryset.filter(thread_id=term), False
        if term.startswith("conv_"):
            return queryset.filter(conversations__conversation_id=term), False
        if "=" in term:
            key, value = term.split("=", 1)
            return queryset.filter(**{f"data__metadata__{key.strip()}": value.strip()}), False
        return queryset.filter(data__metadata__icontains=term), False

    @admin.display(description="status", ordering="status")
    def status_display(self, obj):
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="items")
    def progress(self, obj):
        if not obj.items_total:
            return "—"
        return f"{obj.items_committed}/{obj.items_total}"

    @admin.display(description="last error")
    def short_error(self, obj):
        return Truncator(obj.error_message).chars(80) if obj.error_message else ""

    @admin.display(description="conversation")
    def conversation(self, obj):
        return obj.live_conversation or ""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def _has(self, request, codename):
        return request.user.has_perm(f"migrations_app.{codename}")

    def has_fetch_permission(self, request):
        return self._has(request, "fetch_thread")

    def has_migrate_permission(self, request):
        return self._has(request, "migrate_thread")

    def has_retry_permission(self, request):
        return self._has(request, "retry_thread")

    def has_cancel_permission(self, request):
        return self._has(request, "cancel_thread")

    def has_remigrate_permission(self, request):
        return self._has(request, "remigrate_thread")

    # --- actions --------------------------------------------------------------------------------
    def confirm_and_apply(self, request, queryset, name):
        if name == "preview":
            return self.preview_response(request, queryset)
        plan = fetch_plan(queryset) if name == "fetch" else actions.plan(name, queryset)
        if request.POST.get("post") == "yes" and plan.eligible:
            count = self.apply(request, queryset, name)
            self.message_user(
                request,
                ngettext(
                    "%(action)s: %(count)d thread.",
                    "%(action)s: %(count)d threads.",
                    count,
                )
                % {"action": plan.rule.label, "count": count},
                messages.SUCCESS,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"{plan.rule.label}: are you sure?",
            "plan": plan,
            "action_name": request.POST.get("action", f"{name}_selected"),
            "queryset": queryset,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "opts": self.model._meta,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/migrations_app/thread/confirm_action.html", context)

    def apply(self, request, queryset, name):
        def log(pks):
            LogEntry.objects.log_actions(
                request.user.pk,
                list(Thread.objects.filter(pk__in=pks).only("pk", "thread_id")),
                CHANGE,
                change_message=f"{name} (console action)",
            )

        if name == "fetch":
            return apply_fetch(queryset, request.user, log)
        count, _ = actions.apply(name, queryset, user=request.user, on_chunk=log)
        return count

    def preview_response(self, request, queryset):
        previews = []
        for thread in queryset[:50]:
            try:
                previews.append((thread, preview_thread(thread), None))
            except ThreadNotMirrored as error:
                previews.append((thread, None, str(error)))
        context = {
            **self.admin_site.each_context(request),
            "title": "Preview (dry run): nothing is sent",
            "previews": previews,
            "capped": queryset.count() > 50,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/migrations_app/thread/preview.html", context)

    # --- extra pages ----------------------------------------------------------------------------
    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("mapping.csv", wrap(self.mapping_view), name="migrations_app_thread_mapping"),
            path("dashboard/", wrap(self.dashboard_view), name="migrations_app_dashboard"),
            path(
                "<path:object_id>/act/<str:name>/",
                wrap(self.act_view),
                name="migrations_app_thread_act",
            ),
            *super().get_urls(),
        ]

    def mapping_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        threads = changelist.get_queryset(request)
        writer = csv.writer(Echo(), lineterminator="\n")
        response = StreamingHttpResponse(
            (writer.writerow(row) for row in intake.mapping_rows(threads)),
            content_type="text/csv",
        )
        response["Content-Disposition"] = 'attachment; filename="thread-conversation-mapping.csv"'
        return response

    def act_view(self, request, object_id, name):
        """The thread page's buttons: the same confirmation as the bulk actions."""
        if request.method != "POST" or name not in VALID_BUTTONS:
            raise PermissionDenied
        permission = "fetch" if name == "fetch" else name
        if not getattr(self, f"has_{permission}_permission")(request):
            raise PermissionDenied
        queryset = Thread.objects.filter(pk=object_id)
        response = self.confirm_and_apply(request, queryset, name)
        if response is None:
            return HttpResponseRedirect(
                reverse("admin:migrations_app_thread_change", args=[object_id])
            )
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        thread = self.get_object(request, object_id)
        if thread is None or not self.has_view_permission(request, thread):
            return self._get_obj_does_not_exist_redirect(request, self.model._meta, object_id)
        context = {
            **self.admin_site.each_context(request),
            **thread_page_context(thread, request, self),
            "opts": self.model._meta,
            "original": thread,
            "title": thread.thread_id,
        }
        return TemplateResponse(request, "admin/migrations_app/thread/thread_page.html", context)

    def dashboard_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        figures = dashboard.figures()
        counts, per_minute = figures["counts"], figures["per_minute"]
        total = sum(c.count for c in counts)
        by_status = {c.status: c.count for c in counts}
        peak = max([n for _, n in per_minute] + [1])
        active = by_status[ThreadStatus.QUEUED] + by_status[ThreadStatus.RUNNING]
        context = {
            **self.admin_site.each_context(request),
            "title": "Migration dashboard",
            "counts": counts,
            "total": total,
            "done_percent": percent(by_status[ThreadStatus.SUCCEEDED], total),
            "settled_percent": percent(
                by_status[ThreadStatus.SUCCEEDED] + by_status[ThreadStatus.FAILED], total
            ),
            "bars": [(minute, n, round(100 * n / peak)) for minute, n in per_minute],
            "last_hour": sum(n for _, n in per_minute),
            "failures": figures["failures"],
            "health": figures["health"],
            "rate": figures["rate"],
            "refresh_seconds": 5 if active else None,
            "can_retry": request.user.has_perm("migrations_app.retry_thread"),
            "threads_url": reverse("admin:migrations_app_thread_changelist"),
        }
        return TemplateResponse(request, "admin/migrations_app/dashboard.html", context)

    def changelist_view(self, request, extra_context=None):
        extra = {"mapping_url": reverse("admin:migrations_app_thread_mapping")}
        return super().changelist_view(request, {**(extra_context or {}), **extra})


def percent(part, whole):
    return round(100 * part / whole, 1) if whole else 0


class Echo:
    def write(self, value):
        return value


VALID_BUTTONS = ("fetch", "migrate", "retry", "cancel", "remigrate")


def buttons_for(thread, request, model_admin):
    """Only the actions valid for this thread's state, and only for staff allowed to act."""
    offered = []
    for name in VALID_BUTTONS:
        if not getattr(model_admin, f"has_{name}_permission")(request):
            continue
        if name == "fetch":
            valid = not intake.is_frozen(thread) and thread.status != ThreadStatus.RUNNING
            label = "Fetch from source"
        else:
            valid = thread.status in actions.RULES[name].eligible
            label = actions.RULES[name].label
        if valid:
            offered.append((name, label))
    return offered


def thread_page_context(thread, request, model_admin):
    messages_ = list(thread.messages.order_by("created_at", "position"))
    steps = list(thread.run_steps.order_by("created_at", "pk"))
    calls_by_run = {}
    for step in steps:
        for call in (step.data.get("step_details") or {}).get("tool_calls") or []:
            calls_by_run.setdefault(step.run_id, []).append(call)
    try:
        preview, preview_error = preview_thread(thread), None
    except ThreadNotMirrored as error:
        preview, preview_error = None, str(error)
    config = None
    if thread.assistant_id:
        config = responses_config(thread.assistant.data, thread.data)
    return {
        "thread": thread,
        "thread_messages": [(m, calls_by_run.get(m.data.get("run_id"), [])) for m in messages_],
        "preview": preview,
        "preview_error": preview_error,
        "conversations": list(thread.conversations.order_by("-created_at")),
        "history": list(thread.history.select_related("actor")[:100]),
        "buttons": buttons_for(thread, request, model_admin),
        "status_badge": status_badge(thread.status, thread.get_status_display()),
        "config": config,
    }


# --- fetch as an action -------------------------------------------------------------------------
class _FetchRule:
    name = "fetch"
    label = "Fetch from source"


def fetch_plan(queryset):
    frozen = queryset.filter(items_committed__gt=0).count()
    running = queryset.filter(status=ThreadStatus.RUNNING, items_committed=0).count()
    total = queryset.count()
    skipped = {}
    if frozen:
        skipped["upload started: the mirror is kept as it was uploaded"] = frozen
    if running:
        skipped["running now"] = running
    return actions.Plan(rule=_FetchRule, eligible=total - frozen - running, skipped=skipped)


def apply_fetch(queryset, user, log):
    ids = list(
        queryset.filter(items_committed=0)
        .exclude(status=ThreadStatus.RUNNING)
        .values_list("pk", "thread_id")
    )
    log([pk for pk, _ in ids])
    tasks.queue_fetch([thread_id for _, thread_id in ids], group=f"fetch by {user}")
    return len(ids)

"""Applications' API tokens: created (shown once) and revoked by operators, seen by viewers."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from migrations_app import api_tokens
from migrations_app.admin import display
from migrations_app.admin.pages import admin_page, staff_user
from migrations_app.models import ApiToken

NEW_TOKEN_SESSION_KEY = "migrations_app_new_api_token"


class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[ApiToken]
    ) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
        if self.value() == "active":
            return queryset.filter(revoked_at=None)
        if self.value() == "revoked":
            return queryset.exclude(revoked_at=None)
        return queryset


class TokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["application", "prioritize_on_lookup", "requests_per_minute"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = TokenForm
    list_display = [
        "application",
        "shown_prefix",
        "state",
        "prioritize_on_lookup",
        display.count_column("requests_per_minute", "per minute"),
        display.time_column("last_used_at", "last used"),
        display.time_column("created_at", "created"),
        "created_by",
    ]
    list_filter = [ActiveFilter, "prioritize_on_lookup"]
    list_select_related = ["created_by"]
    search_fields = ["application", "prefix"]
    change_form_template = "admin/migrations_app/apitoken/change_form.html"
    readonly_fields = [
        "shown_prefix",
        "scope",
        "state",
        "created_at",
        "created_by",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    ]

    @admin.display(description="token")
    def shown_prefix(self, obj: ApiToken) -> str:
        return f"{obj.prefix}…" if obj.prefix else ""

    @admin.display(description="state")
    def state(self, obj: ApiToken) -> SafeString:
        if obj.revoked_at is None:
            return format_html('<span class="status-badge status-succeeded">{}</span>', "active")
        return format_html('<span class="status-badge status-cancelled">{}</span>', "revoked")

    # --- who may do what --------------------------------------------------------------------------
    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("migrations_app.manage_api_tokens")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_manage_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if obj is not None and getattr(obj, "revoked_at", None) is not None:
            return False  # a revoked token is a record
        return self.has_manage_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # revoked, never deleted: its row says who had access and when

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        if obj is None:
            return []
        return ["application", *self.readonly_fields]

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        if obj is None:
            return ["application", "prioritize_on_lookup", "requests_per_minute"]
        return [
            "application",
            "shown_prefix",
            "state",
            "scope",
            "prioritize_on_lookup",
            "requests_per_minute",
            "last_used_at",
            "created_at",
            "created_by",
            "revoked_at",
            "revoked_by",
        ]

    # --- creating: the token is shown once -------------------------------------------------------
    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            ApiToken.objects.filter(pk=obj.pk, revoked_at=None).update(
                prioritize_on_lookup=obj.prioritize_on_lookup,
                requests_per_minute=obj.requests_per_minute,
            )
            return
        token, raw = api_tokens.create_token(
            obj.application,
            user=staff_user(request),
            prioritize_on_lookup=obj.prioritize_on_lookup,
            requests_per_minute=obj.requests_per_minute,
        )
        obj.pk, obj.prefix, obj.created_at = token.pk, token.prefix, token.created_at
        # Shown on the token's page after the redirect, once: a reload does not create another.
        request.session[NEW_TOKEN_SESSION_KEY] = {"pk": token.pk, "token": raw}

    def response_add(
        self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        self.message_user(
            request,
            f"Token created for {obj.application}. Copy it now: it is not shown again.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:migrations_app_apitoken_change", args=[obj.pk]))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra: dict[str, Any] = {"can_revoke": self.has_manage_permission(request)}
        shown = request.session.get(NEW_TOKEN_SESSION_KEY)
        if request.method == "GET" and shown and str(shown.get("pk")) == str(object_id):
            extra["new_token"] = shown["token"]
            del request.session[NEW_TOKEN_SESSION_KEY]
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    # --- revoking --------------------------------------------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/revoke/",
                wrap(self.revoke_view),
                name="migrations_app_apitoken_revoke",
            ),
            *super().get_urls(),
        ]

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A confirmation page, then the revocation (POST)."""
        if not self.has_manage_permission(request):
            raise PermissionDenied
        token = self.get_object(request, unquote(object_id))
        if token is None:
            raise Http404(f"No API token with id “{object_id}”.")
        page = reverse("admin:migrations_app_apitoken_change", args=[token.pk])
        if request.method == "POST":
            user = staff_user(request)
            if api_tokens.revoke(token.pk, user):
                LogEntry.objects.log_actions(user.pk, [token], CHANGE, "Revoked")
                self.message_user(
                    request,
                    f"Token {token.prefix}… of {token.application} revoked: its requests are "
                    "refused from now on.",
                    messages.SUCCESS,
                )
            else:
                self.message_user(request, "This token was already revoked.", messages.INFO)
            return HttpResponseRedirect(page)
        return admin_page(
            self,
            request,
            "admin/migrations_app/apitoken/revoke.html",
            f"Revoke the token of {token.application}?",
            token=token,
            token_url=page,
        )

"""The console's own admin pages: their frame, the permission checks Django's change view makes,
and who is acting."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

if TYPE_CHECKING:
    from django.contrib.auth.models import User

M = TypeVar("M", bound=models.Model)

SAFE_METHODS = ("GET", "HEAD")


def admin_page(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    template: str,
    title: str,
    **context: Any,
) -> TemplateResponse:
    """One of the console's own pages in the admin's frame: the site's navigation and user links,
    the model's breadcrumbs (`opts`) and the title."""
    frame = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": title,
    }
    return TemplateResponse(request, template, {**frame, **context})


def viewable_object(model_admin: admin.ModelAdmin[M], request: HttpRequest, object_id: str) -> M:
    """The object a read-only page shows. Like Django's change view: the permission first (so
    an id's existence is not revealed to someone who may not look), then 404 for an unknown id.
    Nothing on these pages is edited, so any other method than GET is refused."""
    if request.method not in SAFE_METHODS:
        raise PermissionDenied
    obj = model_admin.get_object(request, unquote(object_id))
    if not model_admin.has_view_permission(request, obj):
        raise PermissionDenied
    if obj is None:
        raise Http404(f"No {model_admin.opts.verbose_name} with id “{object_id}”.")
    return obj


def require_view_permission(model_admin: admin.ModelAdmin[Any], request: HttpRequest) -> None:
    """A read-only page about the model as a whole (dashboard, mapping): view permission, GET."""
    if request.method not in SAFE_METHODS:
        raise PermissionDenied
    if not model_admin.has_view_permission(request):
        raise PermissionDenied


def staff_user(request: HttpRequest) -> User:
    """Who is acting: a logged-in user (admin_site.admin_view lets nobody else through)."""
    if not isinstance(request.user, get_user_model()):
        raise PermissionDenied
    return request.user


class ObjectPageAdmin(admin.ModelAdmin):
    """A model admin whose change page is the console's own read-only page of the object (the
    thread's comparison, the assistant's configuration): `object_page_template` rendered with
    `object_page_context`, behind the same checks as Django's change view."""

    object_page_template: str

    def object_page_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        raise NotImplementedError

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = viewable_object(self, request, object_id)
        context = self.object_page_context(request, obj)
        return admin_page(
            self, request, self.object_page_template, str(obj), original=obj, **context
        )

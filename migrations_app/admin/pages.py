"""Permission checks for the console's own admin pages, the same as Django's change view makes,
and who is acting."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest

if TYPE_CHECKING:
    from django.contrib.auth.models import User

M = TypeVar("M", bound=models.Model)

SAFE_METHODS = ("GET", "HEAD")


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

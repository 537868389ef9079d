"""The pages outside the admin's own views: "permission denied" and "not found" in the
console's frame, and the favicon browsers ask for at the site's root."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.templatetags.static import static


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Staff who may look but not act (auditors) meet this page: it says so, in the console's
    frame, with the way back."""
    context = {
        **admin.site.each_context(request),
        "title": "Permission denied",
        "reason": str(exception or ""),
    }
    return TemplateResponse(request, "403.html", context, status=403).render()


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """With DEBUG off, an unknown address (or a thread id that does not exist) gets the console's
    frame and the ways back, not Django's bare "Not Found"."""
    context = {
        **admin.site.each_context(request),
        "title": "Page not found",
        "request_path": request.path,
    }
    return TemplateResponse(request, "404.html", context, status=404).render()


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever a page links; the pages link the SVG itself."""
    return HttpResponseRedirect(static("migrations_app/favicon.svg"))

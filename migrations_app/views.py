"""The pages outside the admin's own views: "permission denied" in the admin's look, and the
favicon browsers ask for at the site's root."""

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


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever a page links; the pages link the SVG itself."""
    return HttpResponseRedirect(static("migrations_app/favicon.svg"))

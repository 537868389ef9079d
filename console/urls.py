from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from migrations_app import views
from migrations_app.api import api

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("favicon.ico", views.favicon),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
]

handler403 = "migrations_app.views.permission_denied"
handler404 = "migrations_app.views.page_not_found"

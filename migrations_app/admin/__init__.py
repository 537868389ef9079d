"""The console: Django admin pages for staff who import, migrate, watch, compare and retry."""

from django.contrib import admin

from migrations_app.admin import (  # noqa: F401  (registers the ModelAdmins)
    queue,
    records,
    threads,
    tokens,
)

admin.site.site_header = "Assistants → Conversations migration console"
admin.site.site_title = "Migration console"
admin.site.index_title = "Migration console"
# The console's pages are wide tables and side-by-side comparisons: the app list sidebar would
# take a fifth of a 1440 px screen from them. The index and the breadcrumbs lead everywhere.
admin.site.enable_nav_sidebar = False

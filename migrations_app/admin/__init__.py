"""The console: Django admin pages for staff who import, migrate, watch, compare and retry."""

from django.contrib import admin

from migrations_app.admin import queue, records, threads  # noqa: F401  (registers the ModelAdmins)

admin.site.site_header = "Assistants → Conversations migration console"
admin.site.site_title = "Migration console"
admin.site.index_title = "Migration console"

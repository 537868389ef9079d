"""The console: Django admin pages for staff who import, migrate, watch, compare and retry."""

from migrations_app.admin import records, threads  # noqa: F401  (registers the ModelAdmins)

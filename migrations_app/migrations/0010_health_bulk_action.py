"""Bulk actions ("Select all N" applied by a worker, with its progress), viewable by both staff
groups."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

from migrations_app.staff_groups import create_staff_groups


def let_staff_view_bulk_actions(apps, schema_editor):
    # Permissions are normally created after every migration has run; make view_bulkaction now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    create_staff_groups(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("migrations_app", "0009_import_batch_and_sync"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="BulkAction",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("import", "Import"),
                            ("fetch", "Fetch from source"),
                            ("migrate", "Migrate"),
                            ("retry", "Retry"),
                            ("remigrate", "Re-migrate"),
                            ("cancel", "Cancel"),
                        ],
                        max_length=16,
                    ),
                ),
                ("selection", models.TextField(blank=True)),
                (
                    "eligible",
                    models.PositiveIntegerField(help_text="Threads it applied to when confirmed"),
                ),
                (
                    "done",
                    models.PositiveIntegerField(default=0, help_text="Threads acted on so far"),
                ),
                ("last_pk", models.BigIntegerField(default=0)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("done", "Done"),
                            ("failed", "Failed"),
                        ],
                        default="queued",
                        max_length=16,
                    ),
                ),
                ("task_group", models.CharField(blank=True, max_length=100)),
                ("error", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "requested_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["-created_at"]},
        ),
        migrations.RunPython(let_staff_view_bulk_actions, migrations.RunPython.noop),
    ]

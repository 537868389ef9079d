"""Two groups for staff: operators act, auditors only look."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from migrations_app.staff_groups import create_staff_groups

def create_groups(apps, schema_editor):
    # Permissions are normally created after every migration has run; make ours exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    create_staff_groups(apps)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["operators", "auditors"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("migrations_app", "0004_rate_window"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]

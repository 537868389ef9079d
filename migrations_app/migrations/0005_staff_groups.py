"""Two groups for staff: operators act, auditors only look."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ACTING = ["fetch_thread", "migrate_thread", "retry_thread", "cancel_thread",
          "remigrate_thread", "import_threads"]
VIEWABLE_APPS = ["migrations_app", "django_q"]


def create_groups(apps, schema_editor):
    # Permissions are normally created after every migration has run; make ours exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    viewing = Permission.objects.filter(
        content_type__app_label__in=VIEWABLE_APPS, codename__startswith="view_"
    )
    acting = Permission.objects.filter(content_type__app_label="migrations_app",
                                       codename__in=ACTING)
    operators, _ = Group.objects.get_or_create(name="operators")
    operators.permissions.add(*viewing, *acting)
    auditors, _ = Group.objects.get_or_create(name="auditors")
    auditors.permissions.add(*viewing)


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

"""Two groups for staff: operators act, auditors only look. Created by migration 0005 (permissions
added later, such as sync_assistants, are granted by their own migration); usable with any app
registry (the migration's historical one, or the live one)."""

ACTING = [
    "fetch_thread",
    "migrate_thread",
    "retry_thread",
    "cancel_thread",
    "remigrate_thread",
    "import_threads",
    "sync_assistants",
]
VIEWABLE_APPS = ["migrations_app", "django_q"]


def create_staff_groups(apps):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    viewing = Permission.objects.filter(
        content_type__app_label__in=VIEWABLE_APPS, codename__startswith="view_"
    )
    acting = Permission.objects.filter(
        content_type__app_label="migrations_app", codename__in=ACTING
    )
    operators, _ = Group.objects.get_or_create(name="operators")
    operators.permissions.add(*viewing, *acting)
    auditors, _ = Group.objects.get_or_create(name="auditors")
    auditors.permissions.add(*viewing)

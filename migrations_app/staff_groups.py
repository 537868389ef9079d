"""Two groups for staff: operators act, auditors only look. Created by migration 0005; usable
with any app registry (the migration's historical one, or the live one). ensure_staff_user puts a
login in one of them (the create_staff_user command)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Field

if TYPE_CHECKING:
    from django.apps.registry import Apps
    from django.contrib.auth.base_user import AbstractBaseUser

ACTING = [
    "fetch_thread",
    "migrate_thread",
    "retry_thread",
    "cancel_thread",
    "remigrate_thread",
    "sync_thread",
    "import_threads",
    "sync_assistants",
    "manage_api_tokens",
]
VIEWABLE_APPS = ["migrations_app", "django_q"]


def grant_new_permissions(apps: Apps) -> None:
    """In a migration that adds permissions: create them now (Django creates permissions only
    after every migration has run), then give the staff groups theirs, as at the start."""
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        # create_permissions skips an app whose models module is unset, as it is in a
        # migration's historical registry: any true value will do.
        app_config.models_module = True  # type: ignore[assignment]
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    create_staff_groups(apps)


def create_staff_groups(apps: Apps) -> None:
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


OPERATORS = "operators"
AUDITORS = "auditors"
STAFF_GROUPS = (OPERATORS, AUDITORS)


class StaffUserError(Exception):
    pass


@dataclass(frozen=True)
class StaffUser:
    """What ensure_staff_user found and did, for the command to report."""

    user: AbstractBaseUser
    created: bool = False
    made_staff: bool = False
    joined: bool = False
    left: tuple[str, ...] = ()
    password_changed: bool = False

    @property
    def changed(self) -> bool:
        return any((self.created, self.made_staff, self.joined, self.left, self.password_changed))


def ensure_staff_user(
    username: str, group: str, password: str | None = None, email: str = ""
) -> StaffUser:
    """A staff login in exactly one staff group; run again, it changes only what differs.

    A new user needs a password. An existing user keeps theirs unless one is given, moves out of
    the other staff group, and is never re-activated or stripped of anything else here.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.exceptions import ValidationError

    if group not in STAFF_GROUPS:
        raise StaffUserError(f"Unknown group '{group}': choose {' or '.join(STAFF_GROUPS)}.")
    User = get_user_model()
    username_field = User._meta.get_field(User.USERNAME_FIELD)
    try:
        if isinstance(username_field, Field):
            username_field.run_validators(username)
    except ValidationError as error:
        raise StaffUserError(f"Invalid username '{username}': {' '.join(error.messages)}") from None
    groups = {g.name: g for g in Group.objects.filter(name__in=STAFF_GROUPS)}
    if group not in groups:
        raise StaffUserError(f"The group '{group}' does not exist: run `manage.py migrate`.")

    with transaction.atomic():
        found = User.objects.select_for_update().filter(**{User.USERNAME_FIELD: username}).first()
        created = found is None
        if found is None:
            if password is None:
                raise StaffUserError(f"A new user needs a password: {username} has none.")
            user = User(**{User.USERNAME_FIELD: username}, email=email, is_staff=True)
        else:
            user = found
        made_staff = not created and not user.is_staff
        user.is_staff = True
        if password is not None:
            user.set_password(password)
        user.save()
        current = set(user.groups.filter(name__in=STAFF_GROUPS).values_list("name", flat=True))
        left = tuple(sorted(current - {group}))
        if left:
            user.groups.remove(*(groups[name] for name in left))
        if group not in current:
            user.groups.add(groups[group])
    return StaffUser(
        user=user,
        created=created,
        made_staff=made_staff,
        joined=group not in current,
        left=left,
        password_changed=password is not None and not created,
    )

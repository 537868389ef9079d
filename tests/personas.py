"""The people the console is built for, as users: shared by every test that logs someone in.

operator                   group `operators`: views everything, acts (fetch, migrate, retry,
                           cancel, re-migrate, import)
auditor                    group `auditors`: views everything, acts on nothing
staff_without_permissions  may log in to the admin, may see nothing
"""

from django.apps import apps
from django.contrib.auth.models import Group, User

from migrations_app.staff_groups import create_staff_groups

PASSWORD = "console-pw"


def staff(username: str, group: str | None = None) -> User:
    """An active staff user, in `group` if given (the groups are created if a transactional
    test emptied the tables)."""
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    if group:
        create_staff_groups(apps)
        user.groups.add(Group.objects.get(name=group))
    return user


def operator(username: str = "olga") -> User:
    return staff(username, "operators")


def auditor(username: str = "aldo") -> User:
    return staff(username, "auditors")


def staff_without_permissions(username: str = "stan") -> User:
    return staff(username)


def superuser(username: str = "root") -> User:
    return User.objects.create_superuser(username, password=PASSWORD)

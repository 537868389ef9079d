"""create_staff_user: operator and auditor logins without the admin or a shell session."""

import io
import re

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*args: str, **options: object) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_staff_user", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def groups_of(username: str) -> list[str]:
    return list(User.objects.get(username=username).groups.values_list("name", flat=True))


@pytest.fixture
def typed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the person at the terminal types, answer after answer."""
    answers: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt="": answers.pop(0))
    return answers


def test_a_new_operator_can_log_in_and_act() -> None:
    out, _ = run("olga", "--group", "operators", "--password", "long enough")
    olga = User.objects.get(username="olga")
    assert olga.is_staff and not olga.is_superuser
    assert olga.check_password("long enough")
    assert groups_of("olga") == ["operators"]
    assert olga.has_perm("migrations_app.migrate_thread")
    assert "Created olga in operators (view and act)." in out


def test_a_new_auditor_can_look_but_not_act() -> None:
    run("aldo", "--group", "auditors", "--password", "long enough")
    aldo = User.objects.get(username="aldo")
    assert aldo.has_perm("migrations_app.view_thread")
    assert not aldo.has_perm("migrations_app.migrate_thread")


def test_an_unknown_group_is_refused_naming_the_choices() -> None:
    # Python 3.12.8+ and 3.13.1+ print the choices without quotes.
    choices = r"\(choose from '?operators'?, '?auditors'?\)"
    with pytest.raises(CommandError, match=rf"--group: invalid choice: 'admins' {choices}"):
        run("olga", "--group", "admins", "--password", "long enough")
    assert not User.objects.filter(username="olga").exists()


def test_a_generated_password_is_printed_once_and_works() -> None:
    out, _ = run("olga", "--group", "operators", "--generate-password")
    password = re.search(r"Password for olga \(shown once\): (\S+)", out).group(1)
    assert len(password) >= 20
    assert User.objects.get(username="olga").check_password(password)
    assert out.count(password) == 1


def test_on_a_terminal_the_password_is_asked_twice(typed: list[str]) -> None:
    typed += ["long enough", "long enough"]
    run("olga", "--group", "operators", stdin=Terminal())
    assert User.objects.get(username="olga").check_password("long enough")
    assert typed == []


def test_a_mistyped_or_short_password_is_asked_again(typed: list[str]) -> None:
    typed += ["long enough", "long enuogh", "short", "short", "long enough", "long enough"]
    _, err = run("olga", "--group", "operators", stdin=Terminal())
    assert "The passwords do not match." in err
    assert "too short" in err
    assert User.objects.get(username="olga").check_password("long enough")


def test_three_failed_prompts_create_nobody(typed: list[str]) -> None:
    typed += ["a", "b"] * 3
    with pytest.raises(CommandError, match="No password set after 3 tries; olga was not created"):
        run("olga", "--group", "operators", stdin=Terminal())
    assert not User.objects.filter(username="olga").exists()


def test_without_a_terminal_it_says_how_to_give_a_password() -> None:
    with pytest.raises(CommandError, match="pass --password PASSWORD or --generate-password"):
        run("olga", "--group", "operators", stdin=io.StringIO())
    assert not User.objects.filter(username="olga").exists()


def test_a_short_password_option_is_refused_and_nobody_is_created() -> None:
    with pytest.raises(CommandError, match="too short"):
        run("olga", "--group", "operators", "--password", "short")
    assert not User.objects.filter(username="olga").exists()


def test_an_invalid_username_is_refused() -> None:
    with pytest.raises(CommandError, match="Invalid username 'olga smith'"):
        run("olga smith", "--group", "operators", "--password", "long enough")


def test_running_it_again_changes_nothing_and_says_so() -> None:
    run("olga", "--group", "operators", "--password", "long enough")
    out, _ = run("olga", "--group", "operators", stdin=io.StringIO())
    assert out.strip() == "olga already exists and is in operators (view and act): nothing changed."
    assert User.objects.get(username="olga").check_password("long enough")
    assert groups_of("olga") == ["operators"]


def test_an_auditor_made_operator_leaves_the_auditors() -> None:
    run("aldo", "--group", "auditors", "--password", "long enough")
    aldo = User.objects.get(username="aldo")
    aldo.groups.add(Group.objects.create(name="night shift"))
    out, _ = run("aldo", "--group", "operators")
    assert "aldo already existed, moved out of auditors, added to operators" in out
    assert sorted(groups_of("aldo")) == ["night shift", "operators"]
    assert User.objects.get(username="aldo").check_password("long enough")


def test_a_password_given_for_an_existing_user_replaces_theirs() -> None:
    run("olga", "--group", "operators", "--password", "long enough")
    out, _ = run("olga", "--group", "operators", "--password", "another long one")
    assert "olga already existed, password changed." in out
    assert User.objects.get(username="olga").check_password("another long one")


def test_an_existing_non_staff_user_is_made_staff() -> None:
    User.objects.create_user("sam", password="long enough")
    out, _ = run("sam", "--group", "auditors")
    assert "sam already existed, made staff, added to auditors (view only)." in out
    assert User.objects.get(username="sam").is_staff


def test_an_inactive_user_is_warned_about_not_reactivated() -> None:
    User.objects.create_user("ina", password="long enough", is_staff=True, is_active=False)
    _, err = run("ina", "--group", "auditors")
    assert "ina is inactive and cannot log in" in err
    assert not User.objects.get(username="ina").is_active


def test_a_missing_group_says_to_migrate() -> None:
    Group.objects.filter(name="auditors").delete()
    with pytest.raises(CommandError, match=r"The group 'auditors' does not exist: run `manage.py"):
        run("aldo", "--group", "auditors", "--password", "long enough")

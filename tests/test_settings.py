import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from console.env import env_bool, env_float, env_int, env_list, env_proxy_header, env_str


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("False", False), ("0", False), ("fAlSe", False)],
)
def test_env_bool_takes_true_false_one_zero_in_any_case(raw, expected):
    assert env_bool("FLAG", None, environ={"FLAG": raw}) is expected


@pytest.mark.parametrize("raw", ["yes", "on", "2", "tru"])
def test_env_bool_rejects_anything_else_naming_the_variable(raw):
    with pytest.raises(ImproperlyConfigured, match=f"FLAG must be true/false/1/0.*{raw!r}"):
        env_bool("FLAG", True, environ={"FLAG": raw})


def test_env_bool_uses_default_when_unset_or_blank():
    assert env_bool("FLAG", True, environ={}) is True
    assert env_bool("FLAG", False, environ={"FLAG": "  "}) is False


def test_env_int_parses_and_checks_minimum():
    assert env_int("N", 5, environ={"N": " 12 "}) == 12
    assert env_int("N", 5, environ={}) == 5
    with pytest.raises(ImproperlyConfigured, match=r"N must be a whole number, got '1\.5'"):
        env_int("N", 5, environ={"N": "1.5"})
    with pytest.raises(ImproperlyConfigured, match="N must be at least 1, got 0"):
        env_int("N", 5, minimum=1, environ={"N": "0"})


def test_env_float_rejects_text():
    assert env_float("F", 1.0, environ={"F": "2.5"}) == 2.5
    with pytest.raises(ImproperlyConfigured, match="F must be a number"):
        env_float("F", 1.0, environ={"F": "fast"})


def test_env_list_splits_on_commas_and_drops_blanks():
    assert env_list("HOSTS", ["a"], environ={"HOSTS": "x.com, y.com,,"}) == ["x.com", "y.com"]
    assert env_list("HOSTS", ["a"], environ={}) == ["a"]


def test_env_str_strips_and_treats_blank_as_unset():
    assert env_str("S", "d", environ={"S": "  v "}) == "v"
    assert env_str("S", "d", environ={"S": ""}) == "d"


UNSET = ("DEBUG", "SECRET_KEY", "DATABASE_URL", "HTTPS", "SECURE_PROXY_SSL_HEADER")


def _settings_of(code: str = "", *, unset: tuple = UNSET, **env: str):
    """Run `code` (after `import console.settings as s`) in a fresh interpreter with `env`."""
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-c", f"import console.settings as s\n{code}"],
        env={**clean, **env},
        capture_output=True,
        text=True,
    )


def _import_settings(**env):
    return _settings_of("print(s.DATABASES['default']['ENGINE'])", **{"DEBUG": "true", **env})


def test_debug_is_off_unless_set():
    result = _settings_of("print(s.DEBUG)", SECRET_KEY="x" * 50)
    assert result.stdout.strip() == "False", result.stderr


def test_secret_key_is_required_when_debug_is_off():
    result = _settings_of(DEBUG="false")
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is required when DEBUG is off" in result.stderr
    assert _settings_of().returncode != 0, "DEBUG unset is DEBUG off"


def test_https_settings_are_on_when_debug_is_off_and_off_for_a_debug_run():
    show = "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, " \
        "s.SECURE_HSTS_SECONDS > 0)"  # fmt: skip
    assert _settings_of(show, SECRET_KEY="x" * 50).stdout.split() == ["True"] * 4
    assert _settings_of(show, DEBUG="true").stdout.split() == ["False"] * 4
    rehearsal = _settings_of(show, DEBUG="false", SECRET_KEY="x" * 50, HTTPS="false")
    assert rehearsal.stdout.split() == ["False"] * 4


def test_the_proxy_header_is_read_as_header_colon_value():
    result = _settings_of(
        "print(s.SECURE_PROXY_SSL_HEADER)",
        DEBUG="true",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto: https",
    )
    assert result.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')"
    assert env_proxy_header("P", environ={}) is None
    with pytest.raises(ImproperlyConfigured, match="P must look like 'X-Forwarded-Proto: https'"):
        env_proxy_header("P", environ={"P": "X-Forwarded-Proto"})


def test_no_database_url_means_sqlite_and_database_url_means_postgresql():
    sqlite = _settings_of(
        "d = s.DATABASES['default']; print(d['ENGINE'], d['OPTIONS']['init_command'])",
        DEBUG="true",
    )
    assert "sqlite3" in sqlite.stdout and "journal_mode=WAL" in sqlite.stdout
    postgres = _import_settings(DATABASE_URL="postgres://u:p@db.example:5432/console")
    assert "postgresql" in postgres.stdout


SQLITE_PRAGMAS = """
import django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("PRAGMA journal_mode")
    journal = cursor.fetchone()[0]
    cursor.execute("PRAGMA busy_timeout")
    busy = cursor.fetchone()[0]
print(journal, busy, connection.transaction_mode)
"""


def test_a_sqlite_database_url_gets_the_same_sqlite_options_as_the_default(tmp_path):
    by_path = _settings_of(
        SQLITE_PRAGMAS,
        DEBUG="true",
        SQLITE_PATH=str(tmp_path / "default.sqlite3"),
        DJANGO_SETTINGS_MODULE="console.settings",
    )
    by_url = _settings_of(
        SQLITE_PRAGMAS,
        DEBUG="true",
        DATABASE_URL=f"sqlite:///{tmp_path / 'url.sqlite3'}",
        DJANGO_SETTINGS_MODULE="console.settings",
    )
    assert by_path.stdout.split() == ["wal", "30000", "IMMEDIATE"], by_path.stderr
    assert by_url.stdout.split() == by_path.stdout.split(), by_url.stderr


def _check_ids(**settings):
    with override_settings(**settings):
        return {message.id for message in run_checks()}


def test_check_flags_base_url_without_key():
    assert "migrations_app.E001" in _check_ids(OPENAI_BASE_URL="http://x/v1", OPENAI_API_KEY=None)
    assert "migrations_app.E001" not in _check_ids(OPENAI_BASE_URL=None)


def test_check_flags_retry_not_above_timeout():
    conf = {"name": "t", "orm": "default", "timeout": 600, "retry": 300}
    assert "migrations_app.E003" in _check_ids(Q_CLUSTER=conf)


def test_default_configuration_passes_every_check():
    assert not {i for i in _check_ids() if i.startswith("migrations_app.E")}


@pytest.mark.django_db
def test_postgresql_ends_a_session_left_idle_inside_a_transaction(settings):
    """A worker frozen mid-transaction must not hold its row locks for ever."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setting FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout'"
        )
        assert int(cursor.fetchone()[0]) == settings.MIGRATION_LEASE_SECONDS // 2 * 1000

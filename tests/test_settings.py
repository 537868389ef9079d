import importlib.util
import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from console.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_proxy_header,
    env_str,
)


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


# --- Azure connections ----------------------------------------------------------------------------
def test_env_choice_takes_one_of_its_choices_in_any_case():
    assert env_choice("AUTH", ("bearer", "entra"), "bearer", environ={"AUTH": "Entra"}) == "entra"
    assert env_choice("AUTH", ("bearer", "entra"), "bearer", environ={}) == "bearer"
    with pytest.raises(ImproperlyConfigured, match="AUTH must be one of bearer, entra, got 'key'"):
        env_choice("AUTH", ("bearer", "entra"), "bearer", environ={"AUTH": "key"})


def test_an_unknown_auth_method_stops_start_up_naming_the_three():
    result = _settings_of("print(s.ASSISTANTS_AUTH)", DEBUG="true", ASSISTANTS_AUTH="apikey")
    assert "ASSISTANTS_AUTH must be one of bearer, api-key, entra, got 'apikey'" in result.stderr
    fine = _settings_of("print(s.OPENAI_AUTH, s.OPENAI_API_VERSION)", DEBUG="true",
                        OPENAI_AUTH="API-KEY", OPENAI_API_VERSION="v1")  # fmt: skip
    assert fine.stdout.split() == ["api-key", "v1"], fine.stderr


AZURE_SOURCE = {
    "ASSISTANTS_BASE_URL": "https://contoso.services.ai.azure.com/api/projects/support",
    "ASSISTANTS_API_VERSION": "v1",
}
AZURE_DESTINATION = {"OPENAI_BASE_URL": "https://contoso.openai.azure.com/openai/v1/"}


def _messages(**settings):
    with override_settings(**settings):
        return {message.id: message.msg for message in run_checks()}


@pytest.mark.parametrize("auth", ["api-key", "entra"])
def test_a_complete_azure_configuration_passes_every_check(auth):
    key = "k" * 32 if auth == "api-key" else None
    found = _check_ids(
        **AZURE_SOURCE, **AZURE_DESTINATION, ASSISTANTS_AUTH=auth, OPENAI_AUTH=auth,
        ASSISTANTS_API_KEY=key, OPENAI_API_KEY=key,
    )  # fmt: skip
    assert not {i for i in found if i.startswith("migrations_app.")}


@pytest.mark.parametrize("side", ["ASSISTANTS", "OPENAI"])
@pytest.mark.parametrize("auth", ["api-key", "entra"])
def test_azure_authentication_without_a_base_url_is_refused(side, auth):
    messages = _messages(
        **{f"{side}_AUTH": auth, f"{side}_BASE_URL": None, f"{side}_API_KEY": "k" * 32},
        ASSISTANTS_API_VERSION="v1",
    )
    assert (
        f"{side}_AUTH={auth} is Azure's authentication, but {side}_BASE_URL is not set"
        in (messages["migrations_app.E005"])
    )


@pytest.mark.parametrize("auth", ["api-key", "entra"])
def test_an_azure_source_without_an_api_version_is_refused(auth):
    settings = {**AZURE_SOURCE, "ASSISTANTS_API_VERSION": None, "ASSISTANTS_AUTH": auth}
    messages = _messages(**settings, ASSISTANTS_API_KEY="k" * 32)
    assert "ASSISTANTS_API_VERSION is not set" in messages["migrations_app.E006"]


def test_an_azure_destination_needs_no_api_version():
    found = _check_ids(**AZURE_DESTINATION, OPENAI_AUTH="api-key", OPENAI_API_KEY="k" * 32)
    assert "migrations_app.E006" not in found and "migrations_app.E005" not in found


def test_entra_needs_no_key_but_does_need_azure_identity(monkeypatch):
    settings = {**AZURE_SOURCE, "ASSISTANTS_AUTH": "entra", "ASSISTANTS_API_KEY": None}
    assert not {"migrations_app.E002", "migrations_app.E007"} & _check_ids(**settings)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "azure.identity" else real_find_spec(name, *args),
    )
    assert "needs the azure-identity package" in _messages(**settings)["migrations_app.E007"]


def test_an_unused_destination_key_beside_entra_is_a_warning():
    messages = _messages(**AZURE_DESTINATION, OPENAI_AUTH="entra", OPENAI_API_KEY="k" * 32)
    assert "the key is not used" in messages["migrations_app.W002"]
    assert "migrations_app.E001" not in messages

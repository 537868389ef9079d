import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from console.env import env_bool, env_float, env_int, env_list, env_str


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


def _import_settings(**env):
    clean = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY")}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import console.settings as s; print(s.DATABASES['default']['ENGINE'])",
        ],
        env={**clean, **env},
        capture_output=True,
        text=True,
    )


def test_secret_key_is_required_when_debug_is_off():
    result = _import_settings(DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_no_database_url_means_sqlite_and_database_url_means_postgresql():
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    sqlite = subprocess.run(
        [sys.executable, "-c", "import console.settings as s; d=s.DATABASES['default'];"
         "print(d['ENGINE'], d['OPTIONS']['init_command'])"],
        env=clean, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "sqlite3" in sqlite.stdout and "journal_mode=WAL" in sqlite.stdout
    postgres = _import_settings(DATABASE_URL="postgres://u:p@db.example:5432/console")
    assert "postgresql" in postgres.stdout


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

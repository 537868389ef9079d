"""The console as the README deploys it: the README's production settings, `check --deploy`,
collectstatic, gunicorn behind a TLS-terminating proxy, whitenoise."""

import os
import re
import shlex
import subprocess
import sys
import time

import httpx2
import pytest
from django.core.management.utils import get_random_secret_key
from django.db import connection

from tests.cluster import ROOT, database_url
from tests.postgres import free_port

pytestmark = pytest.mark.django_db(transaction=True)
# What a shell on a fresh machine has: none of the console's variables leak in from the tests.
BASE_ENV = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
PROXY_HEADERS = {"Host": "console.example.com", "X-Forwarded-Proto": "https"}


def readme_production_settings() -> dict[str, str]:
    """The `export NAME=value` lines of the README's production block, exactly; a `<…>`
    placeholder (the secret key) gets a real random value."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Production web server", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S).group(1)
    settings = {}
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            name, value = words[1].split("=", 1)
            settings[name] = value
    for name, value in settings.items():
        if value.startswith("<"):
            assert name == "SECRET_KEY", f"unexpected placeholder for {name} in the README"
            settings[name] = get_random_secret_key()
    assert {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL"} <= set(settings)
    return settings


def production_env(**overrides: str) -> dict[str, str]:
    return {
        **BASE_ENV,
        "DJANGO_SETTINGS_MODULE": "console.settings",
        **readme_production_settings(),
        **overrides,
    }


def test_check_deploy_is_clean_under_the_readme_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_flags_what_the_readme_settings_fix():
    insecure = production_env(HTTPS="false", SECURE_HSTS_PRELOAD="false")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=insecure,
        capture_output=True,
        text=True,
    )
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout, warning


def test_gunicorn_with_the_readme_settings_serves_the_console_over_https_only(tmp_path):
    assert connection.vendor == "postgresql"
    env = production_env(STATIC_ROOT=str(tmp_path / "static"), DATABASE_URL=database_url())
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "console.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                login = httpx2.get(f"{base}/admin/login/", headers=PROXY_HEADERS)
                break
            except httpx2.TransportError:
                time.sleep(0.1)
        assert login.status_code == 200
        assert login.headers["strict-transport-security"].startswith("max-age=31536000")
        assert "script-src 'self'" in login.headers["content-security-policy"]
        assert "secure" in login.headers["set-cookie"].lower()
        plain = httpx2.get(f"{base}/admin/login/", headers={"Host": "console.example.com"})
        assert plain.status_code == 301
        assert plain.headers["location"] == "https://console.example.com/admin/login/"
        css = httpx2.get(f"{base}/static/migrations_app/console.css", headers=PROXY_HEADERS)
        assert css.status_code == 200 and ".status-badge" in css.text
        missing = httpx2.get(f"{base}/nope/", headers=PROXY_HEADERS)
        assert missing.status_code == 404
        assert "Traceback" not in missing.text and "DEBUG" not in missing.text
        foreign = httpx2.get(
            f"{base}/admin/login/", headers={**PROXY_HEADERS, "Host": "evil.example"}
        )
        assert foreign.status_code == 400
    finally:
        server.terminate()
        server.wait(timeout=10)

"""The console as the README deploys it: DEBUG off, collectstatic, gunicorn, whitenoise."""

import os
import socket
import subprocess
import sys
import time

import httpx2
import pytest
from django.db import connection

from tests.cluster import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gunicorn_with_debug_off_serves_the_console_and_its_static_files(tmp_path):
    assert connection.vendor == "postgresql"
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "production-test-key",
        "ALLOWED_HOSTS": "127.0.0.1",
        "STATIC_ROOT": str(tmp_path / "static"),
        "DATABASE_URL": database_url(),
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "console.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                login = httpx2.get(f"{base}/admin/login/")
                break
            except httpx2.TransportError:
                time.sleep(0.1)
        assert login.status_code == 200
        css = httpx2.get(f"{base}/static/migrations_app/console.css")
        assert css.status_code == 200 and ".status-badge" in css.text
        missing = httpx2.get(f"{base}/nope/")
        assert missing.status_code == 404
        assert "Traceback" not in missing.text and "DEBUG" not in missing.text
    finally:
        server.terminate()
        server.wait(timeout=10)

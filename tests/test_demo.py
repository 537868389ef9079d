"""The README's first command, `make demo` (`manage.py demo`), on a fresh SQLite database: it
migrates, prints the URL and a login that works, its worker fetches the demo threads, and it
stops cleanly on Ctrl-C. Run as a user would, in its own process with the console's own settings."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx2

from migrations_app.management.commands.demo import DEMO_PASSWORD, DEMO_USER, EXPORT_ONLY_THREADS
from tests.postgres import free_port

ROOT = Path(__file__).resolve().parents[1]
DEMO_THREADS = 12


# What the suite sets and a fresh clone's shell does not have.
SUITE_ONLY = {"DATABASE_URL", "DEBUG", "SECRET_KEY", "OPENAI_API_KEY", "DJANGO_SETTINGS_MODULE"}


def demo_env(database):
    env = {key: value for key, value in os.environ.items() if key not in SUITE_ONLY}
    return {**env, "SQLITE_PATH": str(database), "SANDBOX_PORT": str(free_port())}


def wait_for(condition, seconds, demo, output):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        assert demo.poll() is None, f"the demo stopped:\n{output.read_text()}"
        time.sleep(0.25)
    raise AssertionError(f"not within {seconds} s:\n{output.read_text()}")


def log_in(base):
    client = httpx2.Client(base_url=base, timeout=10)
    form = client.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)[1]
    answer = client.post(
        "/admin/login/?next=/admin/",
        data={"username": DEMO_USER, "password": DEMO_PASSWORD, "csrfmiddlewaretoken": token},
    )
    return client, answer


def fetched_threads(database):
    with closing(sqlite3.connect(database)) as db:
        query = "SELECT count(*) FROM migrations_app_thread WHERE fetched_at IS NOT NULL"
        return db.execute(query).fetchone()[0]


def test_the_demo_starts_on_a_fresh_database_serves_a_working_login_and_stops(tmp_path):
    database, output = tmp_path / "db.sqlite3", tmp_path / "demo.log"
    port = free_port()
    with open(output, "w") as log:
        demo = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--port", str(port),
             "--threads", str(DEMO_THREADS)],
            cwd=ROOT, env=demo_env(database), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: "Console: " in output.read_text(), 120, demo, output)
        printed = output.read_text()
        assert f"http://127.0.0.1:{port}/admin/" in printed
        assert f"login {DEMO_USER} / {DEMO_PASSWORD}" in printed

        def login_answered():
            try:
                return log_in(f"http://127.0.0.1:{port}")
            except httpx2.TransportError:
                return None

        client, answer = wait_for(login_answered, 60, demo, output)
        assert answer.status_code == 302 and answer.headers["location"] == "/admin/"
        assert "Assistants → Conversations migration console" in client.get("/admin/").text
        # its exports hold some threads (and a few no list names); the demo's worker fetches
        # the other demo threads (and fails the one unknown id)
        assert "Loaded demo-export-v1.zip" in output.read_text()
        expected = DEMO_THREADS + EXPORT_ONLY_THREADS
        wait_for(lambda: fetched_threads(database) == expected, 120, demo, output)
    finally:
        # What Ctrl-C in its terminal does: SIGINT to the demo's process group.
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=60)
    printed = output.read_text()
    assert "Stopped." in printed
    assert "stopped by itself" not in printed, "a plain Ctrl-C is not a crash"
    assert "Traceback" not in printed and "WARNINGS" not in printed, printed

"""Secrets never show: recognisable API keys, a SECRET_KEY and database passwords are configured,
failures of every kind are provoked (API 401, 500, dropped connections, a source that cannot be
reached, an unhandled exception in a view with DEBUG on and off), and then the database (every
table's text), every admin page, the error pages, the log output and every Attempt row are
searched: no secret appears anywhere."""

import io
import logging
import socket

import openai
import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection
from django.test import Client, override_settings
from django.urls import reverse
from django_q.models import OrmQ

from console.errors import SUBSTITUTE, SecretsFilter, mask_url_passwords, redact
from migrations_app import openai_client, upload
from migrations_app.models import Attempt, Thread, ThreadStatus
from tests import personas
from tests.admin_pages import admin_patterns, build_world
from tests.engine import queue, script

pytestmark = pytest.mark.django_db

DESTINATION_KEY = "sk-proj-DestinationSecret-3f9a1c7e5b2d4f6a8c0e"
SOURCE_KEY = "sk-proj-SourceSecret-7c1e9a3f5d2b4e6f8a0c"
SECRET_KEY = "django-SecretKeySecret-0a8e6c4f2d1b3f5a7e9c-0a8e6c4f2d1b3f5a7e9c"
DATABASE_PASSWORD = "DatabasePasswordSecret-5e1f7a3c"
REPORTING_PASSWORD = "ReportingPasswordSecret-9b2d4f6a"
SECRETS = [DESTINATION_KEY, SOURCE_KEY, SECRET_KEY, DATABASE_PASSWORD, REPORTING_PASSWORD]
# A leak can be partial (a truncated message, a "…" in a list column): look for the middles too.
MARKERS = [*SECRETS, "DestinationSecret", "SourceSecret", "SecretKeySecret",
           "DatabasePasswordSecret", "ReportingPasswordSecret"]  # fmt: skip


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.fixture
def configured(sandbox):
    """The console configured as in production, with recognisable secrets, against the sandbox."""
    with override_settings(
        OPENAI_API_KEY=DESTINATION_KEY,
        ASSISTANTS_API_KEY=SOURCE_KEY,
        OPENAI_BASE_URL=sandbox.url,
        ASSISTANTS_BASE_URL=sandbox.url,
        SECRET_KEY=SECRET_KEY,
        DATABASE_URL=f"postgres://console:{DATABASE_PASSWORD}@db.internal:5432/console",
        # A URL-shaped setting the console does not know by name: masked by its shape.
        REPORTING_URL=f"https://report:{REPORTING_PASSWORD}@reports.internal/ingest",
    ):
        yield sandbox


@pytest.fixture
def log_output():
    """What the configured log handler writes (at DEBUG, every logger), and every record raw."""
    root = logging.getLogger()
    handler = next(h for h in root.handlers if h.get_name() == "console")
    written, raw = io.StringIO(), []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raw.append(logging.Formatter().format(record))

    previous_stream, previous_level = handler.setStream(written), root.level
    keep = Keep()
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    try:
        yield lambda: (written.getvalue(), "\n".join(raw))
    finally:
        root.setLevel(previous_level)
        root.removeHandler(keep)
        handler.setStream(previous_stream)


def provoke_api_failures(sandbox, make_worker) -> list[Thread]:
    """One thread per kind of failure, plus one that succeeds, each migrated by a worker with
    the clients the console builds from its settings."""
    thread_ids = iter(sorted(sandbox.state.threads))
    threads = []

    def migrate(*faults: dict, source_client: openai.OpenAI | None = None) -> Thread:
        thread = Thread.objects.create(thread_id=next(thread_ids))
        queue(thread)
        script(sandbox, *faults, times=10)
        clients = {"source_client": source_client} if source_client else {}
        upload.migrate_thread(thread.pk, make_worker(max_retries=1, **clients))
        threads.append(thread)
        return thread

    migrate()  # succeeds
    migrate({"kind": "auth_error", "method": "POST", "path_contains": "/conversations"})  # 401
    migrate({"kind": "auth_error", "method": "GET", "path_contains": "/threads"})  # 401 at source
    migrate({"kind": "server_error", "method": "POST", "path_contains": "/conversations"})  # 500
    migrate({"kind": "server_error", "method": "GET", "path_contains": "/threads"})
    migrate({"kind": "drop_before_write", "method": "POST", "path_contains": "/conversations"})
    migrate({"kind": "drop", "method": "GET", "path_contains": "/threads"})
    with override_settings(ASSISTANTS_BASE_URL=f"http://127.0.0.1:{closed_port()}/v1"):
        migrate(source_client=openai_client.source_client(max_retries=0))  # connection refused
    statuses = [Thread.objects.get(pk=t.pk).status for t in threads]
    assert statuses == [ThreadStatus.SUCCEEDED] + [ThreadStatus.FAILED] * (len(threads) - 1)
    kinds = set(Thread.objects.exclude(error_kind="").values_list("error_kind", flat=True))
    assert kinds >= {"auth", "transient"}, kinds
    return threads


def exploding_figures() -> dict:
    """The dashboard's figures failing with secrets in its local variables."""
    api_key = settings.OPENAI_API_KEY
    database_url = settings.DATABASE_URL
    raise RuntimeError(f"the dashboard failed near {len(api_key) + len(database_url)}")


def unhandled_exception_pages(monkeypatch) -> list[str]:
    """The dashboard raising with DEBUG on (Django's technical 500 page) and off, requested with
    the secrets in the request's environment, as a WSGI server passes os.environ."""
    client = Client(raise_request_exception=False)
    client.force_login(personas.superuser("debugger"))
    environ = {
        "OPENAI_API_KEY": DESTINATION_KEY,
        "DATABASE_URL": settings.DATABASE_URL,
        "REPORTING_URL": settings.REPORTING_URL,
        "HTTP_AUTHORIZATION": f"Bearer {SOURCE_KEY}",
    }
    pages = []
    for debug in (True, False):
        with override_settings(DEBUG=debug), monkeypatch.context() as patch:
            patch.setattr("migrations_app.dashboard.figures", exploding_figures)
            response = client.get(reverse("admin:migrations_app_dashboard"), **environ)
        assert response.status_code == 500
        pages.append(response.content.decode())
    assert "the dashboard failed" in pages[0], "DEBUG on shows the technical page"
    assert "exploding_figures" in pages[0] and "database_url" in pages[0], "…with its locals"
    assert "the dashboard failed" not in pages[1], "DEBUG off shows the plain error page"
    return pages


def database_text() -> str:
    """Every table's rows as PostgreSQL prints them, and every row as the ORM decodes it (pickled
    task arguments and results, the queue's signed payloads)."""
    parts = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT t::text FROM "{table}" t')
            parts += [row[0] for row in cursor.fetchall()]
    for model in apps.get_models(include_auto_created=True):
        parts += map(repr, model._default_manager.values_list())
    parts += [repr(task.task()) for task in OrmQ.objects.all()]
    return "\n".join(parts)


def admin_pages_text() -> str:
    world = build_world()
    client = Client()
    client.force_login(personas.superuser("reader"))
    urls = {url for pattern in admin_patterns() for url in world.urls(pattern)}
    urls |= {
        reverse("admin:migrations_app_thread_change", args=[t.pk]) for t in Thread.objects.all()
    }
    urls |= {
        reverse("admin:migrations_app_attempt_change", args=[a.pk]) for a in Attempt.objects.all()
    }
    parts = []
    for url in sorted(urls):
        response = client.get(url)
        assert response.status_code < 500, url
        if not response.streaming:  # the mapping CSV: ids, statuses and counts only
            parts.append(response.content.decode())
    return "\n".join(parts)


def leaks(where: str, text: str) -> list[str]:
    return [f"{marker!r} in {where}" for marker in MARKERS if marker in text]


def test_no_secret_appears_anywhere_after_failures_of_every_kind(
    configured, make_worker, monkeypatch, log_output
):
    threads = provoke_api_failures(configured, make_worker)
    error_pages = unhandled_exception_pages(monkeypatch)
    written, raw_records = log_output()
    attempts = [repr(a) + repr(vars(a)) for a in Attempt.objects.all()]
    assert len(attempts) >= len(threads)
    assert "the dashboard failed" in written, "the log output was captured"
    found = [
        *leaks("the database", database_text()),
        *leaks("the admin pages", admin_pages_text()),
        *leaks("the technical 500 page (DEBUG on)", error_pages[0]),
        *leaks("the 500 page (DEBUG off)", error_pages[1]),
        *leaks("the log output", written),
        *leaks("the log records", raw_records),
        *leaks("the Attempt rows", "\n".join(attempts)),
    ]
    assert not found, "\n".join(found)


# --- the masking, piece by piece ----------------------------------------------------------------
def test_the_debug_page_masks_the_database_url_and_every_key_bearing_setting(configured):
    shown = SecretsFilter().get_safe_settings()
    assert shown["DATABASE_URL"] == SUBSTITUTE
    assert shown["OPENAI_API_KEY"] == shown["ASSISTANTS_API_KEY"] == shown["SECRET_KEY"]
    assert shown["OPENAI_API_KEY"] == SUBSTITUTE
    assert shown["REPORTING_URL"] == f"https://report:{SUBSTITUTE}@reports.internal/ingest"
    assert shown["OPENAI_BASE_URL"] == configured.url, "what is not secret stays readable"


def test_a_password_inside_any_url_is_masked():
    assert (
        mask_url_passwords("redis://:hunter2-long@cache:6379/0 and postgres://u:p%40ss@db/x")
        == f"redis://:{SUBSTITUTE}@cache:6379/0 and postgres://u:{SUBSTITUTE}@db/x"
    )
    assert mask_url_passwords("https://example.com/a@b") == "https://example.com/a@b"


def test_a_secret_is_cut_out_of_any_text_by_value(configured):
    assert redact(f"Incorrect API key provided: {DESTINATION_KEY}.") == (
        f"Incorrect API key provided: {SUBSTITUTE}."
    )
    assert redact("sandbox test key") == "sandbox test key", "short values are not secrets"


def test_the_log_handler_cuts_secrets_out_of_messages_and_tracebacks(configured, log_output):
    logger = logging.getLogger("migrations_app.test")
    logger.warning("calling with %s", DESTINATION_KEY)
    try:
        raise RuntimeError(f"refused {settings.DATABASE_URL}")
    except RuntimeError:
        logger.exception("it failed")
    written, raw = log_output()
    assert DESTINATION_KEY in raw and DATABASE_PASSWORD in raw, "the records did hold them"
    assert DESTINATION_KEY not in written and DATABASE_PASSWORD not in written
    assert f"calling with {SUBSTITUTE}" in written and "RuntimeError: refused" in written


# --- Microsoft Entra ID tokens: no setting holds them, so they are masked by their shape ----------
ENTRA_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2FpLmF6dXJlLmNvbSJ9.c2ln"


def test_a_bearer_credential_and_a_jwt_are_masked_by_their_shape():
    assert redact(f"headers: {{'Authorization': 'Bearer {ENTRA_TOKEN}'}}") == (
        f"headers: {{'Authorization': 'Bearer {SUBSTITUTE}'}}"
    )
    assert redact(f"token={ENTRA_TOKEN}.") == f"token={SUBSTITUTE}."
    assert redact("a bearer token is sent") == "a bearer token is sent", "prose stays"


def test_an_entra_token_never_reaches_the_log(azure_sandbox, entra_credential, log_output):
    from tests.azure import pointed_at

    logger = logging.getLogger("migrations_app.test")
    with pointed_at(azure_sandbox, "entra"):
        thread = Thread.objects.create(thread_id=next(iter(azure_sandbox.state.threads)))
        from migrations_app import intake

        intake.fetch_for_staff(thread.thread_id)
        (token,) = entra_credential.issued
        logger.warning("sent Authorization: Bearer %s", token)
        logger.warning("the token was %s", token)
    written, raw = log_output()
    assert token in raw, "the records did hold it"
    assert token not in written
    assert ("bearer", token) in azure_sandbox.state.credentials_seen, "the token was used"


def test_the_debug_page_hides_a_local_variable_holding_a_token():
    import sys

    def failing():
        token = ENTRA_TOKEN  # noqa: F841 (read by the debug page)
        raise RuntimeError("refused")

    try:
        failing()
    except RuntimeError:
        frame = sys.exc_info()[2].tb_next.tb_frame
    shown = dict(SecretsFilter().get_traceback_frame_variables(None, frame))
    assert shown["token"] == SUBSTITUTE

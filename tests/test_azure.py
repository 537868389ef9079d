"""Migrating from Azure's classic agents: the console against the sandbox in Azure mode, with an
API key and with a (stubbed) Microsoft Entra ID credential. The sandbox records every request
that came without an api-version; the fixture fails the test if there is one."""

import json
import os
import random
import re
import shlex
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
import time_machine
from django.test import override_settings
from django.urls import reverse

from migrations_app import azure_auth, connections, intake, openai_client, upload
from migrations_app.models import Assistant, Attempt, ErrorKind, Thread
from migrations_app.preview import preview_thread
from migrations_app.ratelimit import SharedRateLimiter
from migrations_app.sandbox import foundry, generate_foundry_dataset
from tests import checks
from tests.azure import KEY, SCOPE, TOKEN_LIFETIME, pointed_at
from tests.engine import register
from tests.validity import assert_valid_items

pytestmark = pytest.mark.django_db


@pytest.fixture
def azure(azure_sandbox):
    return azure_sandbox


@pytest.fixture
def entra(entra_credential):
    return entra_credential


def worker(slept):
    return upload.Worker(
        client=openai_client.destination_client(),
        source_client=openai_client.source_client(max_retries=0),
        sleeper=slept.append,
        rng=random.Random(0),
        limiter=SharedRateLimiter(per_minute=10**7),
        max_retries=3,
    )


def migrate(server, slept, count=1):
    threads = [register(server, minimum=4) for _ in range(count)]
    for thread in threads:
        assert upload.migrate_thread(thread.pk, worker(slept)) == Attempt.Outcome.SUCCEEDED
        checks.assert_migrated_exactly_once(server.state, thread)
    return threads


# --- migrating ----------------------------------------------------------------------------------
def test_threads_migrate_from_azure_with_an_api_key(azure, slept):
    with pointed_at(azure, connections.API_KEY, KEY):
        assert intake.sync_assistants().failure is None
        threads = migrate(azure, slept, count=3)
    checks.assert_no_orphan_holds_items(azure.state)
    assert Assistant.objects.count() == len(azure.state.assistants)
    assert all(thread.warning_count > 0 for thread in threads), "Foundry's tools are named"
    assert set(azure.state.credentials_seen) == {("api-key", KEY)}, "never as a bearer token"
    assert azure.state.missing_api_version == []


def test_threads_migrate_from_azure_with_an_entra_token_refreshed_before_it_expires(
    azure, entra, slept
):
    start = datetime.now(UTC)
    with pointed_at(azure, connections.ENTRA), time_machine.travel(start) as traveller:
        migrate(azure, slept)
        used_before = Counter(azure.state.credentials_seen)
        # Four minutes before the token expires: inside azure-identity's refresh window
        # (five minutes, less up to a minute of jitter).
        traveller.shift(timedelta(seconds=TOKEN_LIFETIME - 200))
        migrate(azure, slept)
    first, second = entra.issued
    assert entra.scopes == [(SCOPE,), (SCOPE,)], "one token per lifetime, not one per request"
    assert set(used_before) == {("bearer", first)}
    assert set(azure.state.credentials_seen) == {("bearer", first), ("bearer", second)}
    assert azure.state.credentials_seen["bearer", first] == used_before["bearer", first], (
        "no request left with the old token once it was due"
    )


def test_the_console_sends_the_api_version_on_every_request_of_a_migration(azure, slept):
    with pointed_at(azure, connections.API_KEY, KEY):
        migrate(azure, slept)
    statuses = {status for _, _, _, status, _ in azure.state.requests_log}
    assert statuses == {200}, "every request answered, none refused"
    assert azure.state.missing_api_version == []


# --- what Azure refuses -------------------------------------------------------------------------
def a_thread(server):
    return next(iter(server.state.threads))


def test_a_request_without_api_version_gets_azures_error_and_is_recorded(azure):
    answer = httpx2.get(f"{azure.url}/threads/{a_thread(azure)}", headers={"api-key": KEY})
    assert answer.status_code == 400
    assert answer.json() == {
        "error": {
            "code": "BadRequest",
            "message": "Missing required query parameter: api-version",
        }
    }
    assert azure.state.missing_api_version == [f"GET /v1/threads/{a_thread(azure)}"]
    azure.state.missing_api_version.clear()  # the request was the test's own


def test_a_console_configured_without_api_version_fails_the_fetch_with_azures_message(azure):
    with (
        pointed_at(azure, connections.API_KEY, KEY),
        override_settings(ASSISTANTS_API_VERSION=None),
    ):
        thread = Thread.objects.create(thread_id=a_thread(azure))
        intake.fetch_for_staff(thread.thread_id)
    thread.refresh_from_db()
    assert thread.error_kind == ErrorKind.INVALID
    assert "Missing required query parameter: api-version" in thread.error_message
    assert azure.state.missing_api_version, "the sandbox saw it"
    azure.state.missing_api_version.clear()  # the test's own misconfiguration


def test_an_unknown_api_version_is_refused_naming_the_supported_ones(azure):
    answer = httpx2.get(
        f"{azure.url}/threads/{a_thread(azure)}",
        params={"api-version": "2024-07-01-preview"},
        headers={"api-key": KEY},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "UnsupportedApiVersionValue"
    assert "'v1'" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"api-key": KEY}, 200),
        ({"Authorization": "Bearer eyJ.token.sig"}, 200),
        ({"Authorization": "Basic abc"}, 401),
    ],
)
def test_azure_mode_takes_an_api_key_or_a_bearer_token_and_no_beta_header(azure, headers, status):
    answer = httpx2.get(
        f"{azure.url}/threads/{a_thread(azure)}", params={"api-version": "v1"}, headers=headers
    )
    assert answer.status_code == status


# --- the clients --------------------------------------------------------------------------------
def test_an_api_key_client_sends_the_key_in_the_api_key_header_only(azure):
    with pointed_at(azure, connections.API_KEY, KEY):
        client = openai_client.source_client()
    seen = []
    client._client.event_hooks["request"].append(lambda request: seen.append(request))
    openai_client.fetch_thread_bundle(client, a_thread(azure))
    assert seen, "requests were sent"
    for request in seen:
        assert request.headers["api-key"] == KEY
        assert "authorization" not in request.headers
        assert request.url.params["api-version"] == "v1"


def test_one_client_per_process_and_configuration(azure):
    with pointed_at(azure, connections.API_KEY, KEY):
        first, again = openai_client.source_client(), openai_client.source_client()
        destination = openai_client.destination_client()
    with pointed_at(azure, connections.BEARER, KEY):
        bearer = openai_client.source_client()
    assert first is again
    assert destination is not first and bearer is not first


def test_an_entra_token_is_asked_for_once_and_again_only_when_it_is_nearly_due(entra):
    with time_machine.travel(datetime(2026, 11, 26, 12, 0, tzinfo=UTC), tick=False) as traveller:
        tokens = [azure_auth.bearer_token(SCOPE) for _ in range(50)]
        traveller.shift(timedelta(seconds=TOKEN_LIFETIME - 400))
        tokens.append(azure_auth.bearer_token(SCOPE))
        traveller.shift(timedelta(seconds=200))  # 200 s left
        tokens.append(azure_auth.bearer_token(SCOPE))
    assert set(tokens[:51]) == {entra.issued[0]}
    assert tokens[-1] == entra.issued[1]
    assert len(entra.issued) == 2


def test_the_connections_never_show_a_key():
    with override_settings(
        ASSISTANTS_BASE_URL="https://user:pass@contoso.services.ai.azure.com/api/projects/p?x=1",
        ASSISTANTS_API_KEY=KEY,
        ASSISTANTS_AUTH="api-key",
        ASSISTANTS_API_VERSION="v1",
    ):
        source = connections.source()
    assert source.address == "contoso.services.ai.azure.com/api/projects/p"
    assert KEY not in repr(source) and "pass" not in source.address


# --- Foundry's shapes through intake and the pages ------------------------------------------------
def test_a_foundry_export_loads_whole_and_every_thread_converts(tmp_path):
    assistants, bundles = generate_foundry_dataset(seed=7, thread_count=30)
    bundles = list(bundles)
    (tmp_path / "threads").mkdir()
    (tmp_path / "assistants.json").write_text(json.dumps(assistants))
    for bundle in bundles:
        (tmp_path / "threads" / f"{bundle['thread']['id']}.json").write_text(json.dumps(bundle))
    batch = intake.load_export(tmp_path)
    assert (batch.status, batch.new_count, batch.invalid_count) == ("done", len(bundles), 0)
    assert Assistant.objects.count() == len(assistants)
    with_foundry_calls = [b["thread"]["id"] for b in bundles if has_foundry_call(b)]
    warned = set(Thread.objects.filter(warning_count__gt=0).values_list("thread_id", flat=True))
    assert with_foundry_calls and set(with_foundry_calls) <= warned
    for thread in Thread.objects.all():
        assert_valid_items(preview_thread(thread).items)


def has_foundry_call(bundle):
    return any(
        call["type"] in foundry.TOOL_TYPES
        for step in bundle["run_steps"]
        for call in step["step_details"]["tool_calls"]
    )


def test_a_foundry_thread_page_shows_its_url_citations_and_data_sources(azure, admin_client):
    def shows(thread_id, text):
        return text in json.dumps(azure.state.messages[thread_id])

    thread_id = next(
        t for t in azure.state.threads if shows(t, "url_citation") and shows(t, "data_source")
    )
    thread = Thread.objects.create(thread_id=thread_id)
    with pointed_at(azure, connections.API_KEY, KEY):
        intake.fetch_for_staff(thread_id)
    page = admin_client.get(reverse("admin:migrations_app_thread_change", args=[thread.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert 'href="https://www.contoso.example/shipping"' in html
    assert "azureml://datastores/workspaceblobstore/paths/faq.pdf" in html
    assert "url_citation https://www.contoso.example/shipping" in html, "the warning names it"


# --- the README's settings ------------------------------------------------------------------------
def readme_azure_blocks():
    """The `export` lines of each shell block in the README's Azure section, placeholders filled
    in (`<resource>` → contoso, `<project>` → support, any other `<…>` → a key)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Migrating from Azure classic agents", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        exported = {}
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["export"]:
                name, value = words[1].split("=", 1)
                value = value.replace("<resource>", "contoso").replace("<project>", "support")
                exported[name] = re.sub(r"<[^>]+>", "k" * 32, value)
        blocks.append(exported)
    return blocks


def test_the_readme_has_both_auth_methods_and_check_passes_with_exactly_their_settings():
    with_key, with_entra = readme_azure_blocks()
    assert with_key["ASSISTANTS_AUTH"] == with_key["OPENAI_AUTH"] == "api-key"
    assert with_entra["ASSISTANTS_AUTH"] == with_entra["OPENAI_AUTH"] == "entra"
    shell = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    for exported in (with_key, with_entra):
        result = subprocess.run(
            [sys.executable, "manage.py", "check"],
            cwd=Path(__file__).resolve().parent.parent,
            env={**shell, "DEBUG": "true", **exported},
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0 and "no issues" in result.stdout, result.stderr

import os
import random
import time
from datetime import UTC, datetime

import pytest
import time_machine
from django.test import override_settings

from migrations_app.sandbox import SandboxServer, seeded_state
from tests import factories, personas


def pytest_sessionstart(session):
    """The suite's promise is a real PostgreSQL: refuse to pass on SQLite instead."""
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine and not os.environ.get("ALLOW_SQLITE_TESTS"):
        pytest.exit(
            f"The suite runs on PostgreSQL, not {engine}: use `make test` (it starts one).",
            returncode=2,
        )


@pytest.fixture(autouse=True)
def _unpaced_source(settings):
    """Source reads are paced by their own budget (ASSISTANTS_REQUESTS_PER_MINUTE); tests that
    fetch do not wait for it, unless they set a budget of their own."""
    settings.ASSISTANTS_REQUESTS_PER_MINUTE = 10**7


@pytest.fixture(scope="session")
def demo_state():
    """The deterministic demo world; tests must not change it (use `sandbox` for that)."""
    return seeded_state(seed=7, thread_count=30)


@pytest.fixture
def sandbox():
    """A fresh sandbox on loopback, seeded, with the console pointed at it."""
    server = SandboxServer(state=seeded_state(seed=7, thread_count=30))
    pointed = override_settings(
        SANDBOX_URL=server.url,
        OPENAI_API_KEY=None,
        ASSISTANTS_API_KEY=None,
        OPENAI_BASE_URL=None,
        ASSISTANTS_BASE_URL=None,
    )
    with server, pointed:
        yield server


@pytest.fixture
def azure_sandbox():
    """A fresh sandbox in Azure mode (api-version required, api-key or bearer), seeded with
    Foundry's shapes. A request the console sent without an api-version fails the test."""
    server = SandboxServer(state=seeded_state(seed=7, thread_count=30, foundry=True), azure=True)
    with server:
        yield server
    assert server.state.missing_api_version == [], "requests sent without an api-version"


@pytest.fixture
def entra_credential(monkeypatch):
    """A stub in place of DefaultAzureCredential (tests/azure.py), fresh tokens for the test."""
    from migrations_app import azure_auth
    from tests.azure import FakeCredential

    credential = FakeCredential()
    monkeypatch.setattr(azure_auth, "default_credential", lambda: credential)
    azure_auth.forget()
    yield credential
    azure_auth.forget()


# --- people, logged in to the test client (tests/personas.py says who they are) -------------------
@pytest.fixture
def operator(client):
    user = personas.operator()
    client.force_login(user)
    return user


@pytest.fixture
def auditor(client):
    user = personas.auditor()
    client.force_login(user)
    return user


@pytest.fixture
def mirrored():
    """30 generated threads with their assistants, mirrored as an export loads them."""
    return factories.mirrored()


@pytest.fixture
def client_for(sandbox):
    import openai

    def make(max_retries=0):
        return openai.OpenAI(api_key="test", base_url=sandbox.url, max_retries=max_retries)

    return make


@pytest.fixture
def clock():
    """The worker's clock, frozen; `clock.shift(seconds)` moves it on."""
    with time_machine.travel(datetime(2026, 11, 26, 12, 0, tzinfo=UTC), tick=False) as traveller:
        yield traveller


@pytest.fixture
def slept():
    """Every wait the engine asked for (the tests never sleep)."""
    return []


@pytest.fixture
def make_worker(sandbox, slept):
    """A migration worker pointed at the sandbox, with the console's own clients (the write
    guard included), recorded sleeps and a budget that never waits."""
    from migrations_app import openai_client, upload
    from migrations_app.ratelimit import SharedRateLimiter

    def make(**overrides):
        options = {
            "client": openai_client.destination_client(),
            "source_client": openai_client.source_client(max_retries=0),
            "sleeper": slept.append,
            "rng": random.Random(0),
            # Both of its clocks the wall clock (frozen with it where a test freezes time).
            "limiter": SharedRateLimiter(per_minute=10**7, clock=time.time, shared_clock=time.time),
            "max_retries": 3,
        }
        options.update(overrides)
        return upload.Worker(**options)

    return make


@pytest.fixture
def migrated(sandbox, make_worker):
    """Threads of the sandbox's migrated into it, verified, with their assistants: `migrated(n)`
    migrates n more and returns them."""
    from migrations_app import intake, tallies, upload
    from tests.engine import register

    intake.sync_assistants()

    def make(count=1):
        made = []
        for _ in range(count):
            thread = register(sandbox, minimum=2, maximum=40)
            assert upload.migrate_thread(thread.pk, make_worker()) == "succeeded"
            thread.refresh_from_db()
            made.append(thread)
        tallies.compact()
        return made

    return make

import pytest
from django.db import connection
from django.test import override_settings

from migrations_app.sandbox import SandboxServer, seeded_state


@pytest.fixture(autouse=True, scope="session")
def _runs_on_postgresql(django_db_setup, django_db_blocker):
    """The suite's promise is a real PostgreSQL; fail loudly rather than pass on SQLite."""
    with django_db_blocker.unblock():
        assert connection.vendor == "postgresql", (
            "Run the tests through `make test` (it starts PostgreSQL and sets DATABASE_URL)."
        )


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
def client_for(sandbox):
    import openai

    def make(max_retries=0):
        return openai.OpenAI(api_key="test", base_url=sandbox.url, max_retries=max_retries)

    return make

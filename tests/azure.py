"""Helpers for tests against the sandbox in Azure mode (the fixtures `azure_sandbox` and
`entra_credential` are in conftest.py)."""

from datetime import UTC, datetime

from azure.core.credentials import AccessToken
from django.test import override_settings

KEY = "azure-test-key-0123456789abcdef"
SCOPE = "https://ai.azure.com/.default"
TOKEN_LIFETIME = 3600


def pointed_at(server, auth, key=None):
    """Both sides on the Azure-mode sandbox, as an Azure deployment configures them (`auth`:
    api-key with `key`, or entra); the sandbox's default URL points at a closed port, so nothing
    reaches it by the no-key route."""
    return override_settings(
        SANDBOX_URL="http://127.0.0.1:9/v1",
        ASSISTANTS_BASE_URL=server.url,
        OPENAI_BASE_URL=server.url,
        ASSISTANTS_API_KEY=key,
        OPENAI_API_KEY=key,
        ASSISTANTS_AUTH=auth,
        OPENAI_AUTH=auth,
        ASSISTANTS_API_VERSION="v1",
        OPENAI_API_VERSION="v1",
    )


class FakeCredential:
    """DefaultAzureCredential's interface: get_token(*scopes) -> AccessToken(token, expires_on).
    Each token is JWT-shaped and lives TOKEN_LIFETIME seconds from when it is issued."""

    def __init__(self):
        self.issued: list[str] = []
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes, **kwargs):
        self.scopes.append(scopes)
        number = len(self.issued) + 1
        token = f"eyJ0eXAiOiJKV1QifQ.eyJzZXEiOi{number:04d}fQ.c2lnbmF0dXJl{number}"
        self.issued.append(token)
        return AccessToken(token, int(datetime.now(UTC).timestamp()) + TOKEN_LIFETIME)

"""Which API each side talks to and how: read from the settings once per request, pure otherwise.

`openai_client` builds its clients from these, the start-up checks judge them, and the dashboard
shows them (host, API version, auth method; never a secret). With no key and no Entra ID both
sides are the built-in sandbox on loopback.
"""

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from django.conf import settings

BEARER, API_KEY, ENTRA = "bearer", "api-key", "entra"
SANDBOX = "sandbox"  # no key: the built-in sandbox, which takes any bearer token
SANDBOX_KEY = "sandbox"
Side = Literal["source", "destination"]
AUTH_LABELS = {
    BEARER: "API key as a bearer token",
    API_KEY: "API key in the api-key header",
    ENTRA: "Microsoft Entra ID token",
    SANDBOX: "the sandbox (no key)",
}
OPENAI_DEFAULT_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class Connection:
    """One side's route: where, which API version, how it authenticates. Hashable (the clients
    are cached per connection); the key never appears in its repr."""

    side: Side
    base_url: str
    auth: str  # BEARER, API_KEY, ENTRA or SANDBOX
    api_version: str | None = None
    key: str | None = field(default=None, repr=False)
    entra_scope: str | None = None

    @property
    def address(self) -> str:
        """Host, port and path of the base URL: never its user, password or query."""
        parts = urlsplit(self.base_url)
        if not parts.hostname:
            return "(not set)"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.hostname}{port}{parts.path.rstrip('/')}"

    @property
    def auth_label(self) -> str:
        return AUTH_LABELS[self.auth]

    @property
    def is_sandbox(self) -> bool:
        return self.auth == SANDBOX

    @property
    def is_azure(self) -> bool:
        """Azure (Foundry's classic agents, Azure OpenAI): an api-version, an api-key header or
        Entra ID, or an Azure host."""
        host = urlsplit(self.base_url).hostname or ""
        return (
            bool(self.api_version)
            or self.auth in (API_KEY, ENTRA)
            or host.endswith((".azure.com", ".azure.net"))
        )

    @property
    def default_query(self) -> dict[str, str]:
        """What every request carries in its query string."""
        return {"api-version": self.api_version} if self.api_version else {}


def _connection(
    side: Side, key: str | None, base_url: str | None, auth: str, version: str | None, scope: str
) -> Connection:
    if auth == ENTRA:  # a token, no key; the base URL is required (migrations_app.E006)
        return Connection(side, base_url or "", ENTRA, version, entra_scope=scope)
    if not key:
        return Connection(side, settings.SANDBOX_URL, SANDBOX, version, key=SANDBOX_KEY)
    return Connection(side, base_url or OPENAI_DEFAULT_URL, auth, version, key=key)


def source() -> Connection:
    """The Assistants-shaped source (ASSISTANTS_*)."""
    return _connection(
        "source",
        settings.ASSISTANTS_API_KEY,
        settings.ASSISTANTS_BASE_URL,
        settings.ASSISTANTS_AUTH,
        settings.ASSISTANTS_API_VERSION,
        settings.ASSISTANTS_ENTRA_SCOPE,
    )


def destination() -> Connection:
    """The Conversations destination (OPENAI_*)."""
    return _connection(
        "destination",
        settings.OPENAI_API_KEY,
        settings.OPENAI_BASE_URL,
        settings.OPENAI_AUTH,
        settings.OPENAI_API_VERSION,
        settings.OPENAI_ENTRA_SCOPE,
    )

"""Microsoft Entra ID tokens for `ASSISTANTS_AUTH=entra` / `OPENAI_AUTH=entra`.

One credential per process (azure-identity's DefaultAzureCredential: environment, workload
identity, managed identity, the Azure CLI, …) and one token provider per scope. The provider is
azure-identity's own `get_bearer_token_provider`: it keeps the token and asks the credential for
a new one five minutes (less up to a minute of jitter) before it expires, or at the token's
`refresh_on` when the credential gives one, so a request never leaves with a token that is about
to run out. Tokens are never logged: nothing here logs, the SDK logs no headers, and
console.errors masks anything shaped like a token in a log line or an error page.

azure-identity is imported only when Entra ID is configured: it costs a quarter of a second at
start-up that no other configuration needs.
"""

import functools
import threading
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()


def default_credential() -> Any:
    """azure-identity's DefaultAzureCredential. Tests replace this function with a stub that
    has the same `get_token(*scopes) -> AccessToken(token, expires_on)`."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


@functools.cache
def _credential() -> Any:
    return default_credential()


@functools.cache
def _provider(scope: str) -> Callable[[], str]:
    from azure.identity import get_bearer_token_provider

    return get_bearer_token_provider(_credential(), scope)


def bearer_token(scope: str) -> str:
    """A valid token for `scope`, refreshed before it expires. The SDK calls this before every
    request (a callable `api_key`); the lock keeps the worker's threads from each asking the
    credential for a new token at the moment the old one is due."""
    with _lock:
        return _provider(scope)()


def forget() -> None:
    """Drop the credential and its tokens (a test that swaps the credential calls this)."""
    with _lock:
        _provider.cache_clear()
        _credential.cache_clear()

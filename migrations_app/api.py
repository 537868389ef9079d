"""The lookup API for applications, under /api/v1/: which conversation did a thread become?

Built with django-ninja: the endpoints are typed functions whose pydantic schemas validate the
input (1 to 1,000 ids), shape the output and write the OpenAPI description (/api/v1/schema)
from the same code. pydantic comes with the openai SDK already, and a request costs little more
than the view itself, which the 20 ms target of a single lookup at 10⁷ threads leaves room for.

Every request carries an application's token (`Authorization: Bearer …`, api_tokens.py): no
valid token is a 401, a token over its rate is a 429 with Retry-After. The API only reads, except
that a token with "prioritize on lookup" queues a thread it asks for ahead of the rest when the
thread is not migrated yet (lookup.prioritize).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema, Status
from ninja.errors import AuthenticationError
from ninja.renderers import BaseRenderer
from ninja.security import HttpBearer
from pydantic import BaseModel, Field

from migrations_app import api_tokens, lookup
from migrations_app.api_tokens import Caller


class JsonRenderer(BaseRenderer):
    media_type = "application/json"

    def render(self, request: HttpRequest, data: Any, *, response_status: int) -> bytes:
        return orjson.dumps(data)


class ApplicationToken(HttpBearer):
    """An application's token, admitted within its rate (api_tokens.TokenGate)."""

    def authenticate(self, request: HttpRequest, token: str) -> Caller | None:
        try:
            return api_tokens.gate().admit(token)
        except api_tokens.Refused:
            return None


api = NinjaAPI(
    title="Migration console lookup API",
    version="1",
    description=(
        "Look up the conversation each Assistants thread became. Send an application's token "
        "as `Authorization: Bearer <token>` (operators create them in the console's admin)."
    ),
    openapi_url="/schema",
    docs_url=None,  # the docs page loads its scripts from a CDN, which the CSP refuses
    urls_namespace="api",
    auth=ApplicationToken(),
    renderer=JsonRenderer(),
)


# --- schemas -------------------------------------------------------------------------------------
# The answers are plain pydantic models, not ninja's Schema: a Schema reads each field through
# its Django-object getter, which cost 60 ms of a 1,000-thread answer; from dicts, pydantic's own
# validation costs a few.
class Warning(BaseModel):
    code: str = Field(
        description="lost_at_destination, exceeds_context, model_retires or conversion"
    )
    message: str


class ThreadOut(BaseModel):
    thread_id: str
    conversation_id: str | None = Field(
        description="The conversation to continue: set once the migration was verified"
    )
    status: str = Field(description="pending, queued, running, succeeded, failed or cancelled")
    migrated_at: datetime | None = Field(description="When the conversation was verified")
    items: int = Field(description="Items the thread converts to (the conversation's, migrated)")
    warnings: list[Warning]


class LookupIn(Schema):
    thread_ids: list[str] = Field(min_length=1, max_length=lookup.MAX_IDS)


class LookupOut(BaseModel):
    threads: list[ThreadOut] = Field(description="The threads found, in the order asked, once each")
    unknown: list[str] = Field(description="The ids this console does not know")
    queued_ahead: list[str] = Field(
        description="Threads this lookup queued ahead of the rest (prioritize on lookup)"
    )


class NotFound(BaseModel):
    detail: str
    thread_id: str


# --- endpoints -----------------------------------------------------------------------------------
def _caller(request: HttpRequest) -> Caller:
    return request.auth  # type: ignore[attr-defined]


# The bulk lookup first: its path would otherwise be read as a thread id.
@api.post("/threads/lookup", response=LookupOut, summary="Look up up to 1,000 threads at once")
def look_up_threads(request: HttpRequest, body: LookupIn) -> dict[str, Any]:
    found, unknown = lookup.find(body.thread_ids)
    caller = _caller(request)
    ahead = lookup.prioritize(found, caller.application) if caller.prioritize_on_lookup else []
    return {
        "threads": [item.as_dict() for item in found],
        "unknown": unknown,
        "queued_ahead": ahead,
    }


@api.get(
    "/threads/{thread_id}",
    response={200: ThreadOut, 404: NotFound},
    summary="Look up one thread",
)
def get_thread(request: HttpRequest, thread_id: str) -> Status[Any]:
    found, _ = lookup.find([thread_id])
    if not found:
        return Status(
            404,
            {
                "detail": f"No thread with id {thread_id!r} is known to this console.",
                "thread_id": thread_id,
            },
        )
    caller = _caller(request)
    if caller.prioritize_on_lookup:
        lookup.prioritize(found, caller.application)
    return Status(200, found[0].as_dict())


# --- errors --------------------------------------------------------------------------------------
@api.exception_handler(AuthenticationError)
def unauthorized(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = api.create_response(
        request,
        {"detail": "A valid API token is required: send Authorization: Bearer <token>."},
        status=401,
    )
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(api_tokens.Throttled)
def throttled(request: HttpRequest, exc: api_tokens.Throttled) -> HttpResponse:
    seconds = exc.retry_after_header
    response = api.create_response(
        request,
        {"detail": f"This token's rate limit is reached: retry after {seconds} s."},
        status=429,
    )
    response["Retry-After"] = seconds
    return response

"""The sandbox's HTTP face: the API's wire format on loopback, with faults on demand.

Routes (under /v1): GET assistants, assistants/{id}, threads/{id}, threads/{id}/messages,
threads/{id}/runs, threads/{id}/runs/{run}/steps; POST conversations, GET/DELETE
conversations/{id}, POST/GET conversations/{id}/items, DELETE conversations/{id}/items/{item};
POST responses/input_tokens (a deterministic estimate).
Introspection and control (no /v1, never faulted): GET /_sandbox/state, POST /_sandbox/faults,
GET /_sandbox/health, POST /_sandbox/threads/{id}/turns (add exchanges to a live thread),
POST /_sandbox/trickle (add them on a timer), POST /_sandbox/conversations/{id} with {"lose":
"conversation" | "items" | "last_item"} and/or {"input_tokens": N} (the size to report from then
on).

Azure mode (`SandboxServer(azure=True)`, `run_sandbox --azure`) answers as Azure's Foundry
classic agents do: every /v1 request needs an `api-version` query parameter (one Foundry knows),
and authenticates with an `api-key` header or an `Authorization: Bearer` token (a Microsoft
Entra ID token); the Assistants beta header is not needed.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import SplitResult, parse_qs, urlsplit

from migrations_app.sandbox.state import SandboxState, item_tokens
from migrations_app.sandbox.validation import (
    InvalidRequest,
    check_known_keys,
    validate_items,
    validate_metadata,
)

JSON = dict[str, Any]
Query = dict[str, list[str]]  # parse_qs
Reply = tuple[int, Any]  # status, JSON body
Answer = tuple[int, Any, dict[str, str]]  # status, JSON body, extra headers
Handler = Callable[..., Reply]  # (state, request, query, **ids from the URL)
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append((method, re.compile(f"^{pattern}$"), handler))
        return handler

    return register


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}


def not_found(kind: str, object_id: str) -> ApiError:
    return ApiError(404, f"No {kind} found with id '{object_id}'.", code=None)


# --- paging ------------------------------------------------------------------------------------
def _int_param(query: Query, name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name, [str(default)])[0]
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"Invalid '{name}': expected an integer.", param=name) from None
    if not low <= value <= high:
        raise ApiError(
            400,
            f"Invalid '{name}': integer out of range; expected {low} to {high}, got {value}.",
            param=name,
            code="integer_out_of_range",
        )
    return value


def paginate(objects: Sequence[JSON], query: Query, *, allow_before: bool = True) -> JSON:
    """A cursor page the way the API builds it: order (default desc), after, before, limit."""
    limit = _int_param(query, "limit", 20, 1, 100)
    order = query.get("order", ["desc"])[0]
    if order not in ("asc", "desc"):
        raise ApiError(400, "Invalid 'order': expected 'asc' or 'desc'.", param="order")
    ordered = list(objects) if order == "asc" else list(reversed(objects))
    ids = [obj["id"] for obj in ordered]
    after = query.get("after", [""])[0]
    before = query.get("before", [""])[0] if allow_before else ""
    start, end = 0, len(ordered)
    if after:
        if after not in ids:
            raise ApiError(400, f"Invalid 'after': no object with id '{after}'.", param="after")
        start = ids.index(after) + 1
    if before:
        if before not in ids:
            raise ApiError(400, f"Invalid 'before': no object with id '{before}'.", param="before")
        end = ids.index(before)
        start = max(start, end - limit) if not after else start
    page = ordered[start:end][:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": start + len(page) < end,
    }


# --- source endpoints --------------------------------------------------------------------------
def _require_beta(request: SandboxHandler) -> None:
    if request.azure:  # Foundry's agents API has no beta header
        return
    if "assistants=v2" not in (request.headers.get("OpenAI-Beta") or ""):
        raise ApiError(
            400,
            "You must provide the 'OpenAI-Beta' header to access the Assistants API. "
            "Please try again by setting the header 'OpenAI-Beta: assistants=v2'.",
            code="invalid_beta",
        )


@route("GET", r"/v1/assistants")
def list_assistants(state: SandboxState, request: SandboxHandler, query: Query) -> Reply:
    _require_beta(request)
    with state.lock:
        objects = sorted(state.assistants.values(), key=lambda a: (a["created_at"], a["id"]))
    return 200, paginate(objects, query)


@route("GET", r"/v1/assistants/(?P<assistant_id>[^/]+)")
def retrieve_assistant(
    state: SandboxState, request: SandboxHandler, query: Query, assistant_id: str
) -> Reply:
    _require_beta(request)
    if assistant_id not in state.assistants:
        raise not_found("assistant", assistant_id)
    return 200, state.assistants[assistant_id]


def _thread_or_404(state: SandboxState, thread_id: str) -> JSON:
    if thread_id not in state.threads:
        raise not_found("thread", thread_id)
    return state.threads[thread_id]


@route("GET", r"/v1/threads/(?P<thread_id>[^/]+)")
def retrieve_thread(
    state: SandboxState, request: SandboxHandler, query: Query, thread_id: str
) -> Reply:
    _require_beta(request)
    return 200, _thread_or_404(state, thread_id)


@route("GET", r"/v1/threads/(?P<thread_id>[^/]+)/messages")
def list_messages(
    state: SandboxState, request: SandboxHandler, query: Query, thread_id: str
) -> Reply:
    _require_beta(request)
    _thread_or_404(state, thread_id)
    return 200, paginate(state.messages.get(thread_id, []), query)


@route("GET", r"/v1/threads/(?P<thread_id>[^/]+)/runs")
def list_runs(state: SandboxState, request: SandboxHandler, query: Query, thread_id: str) -> Reply:
    _require_beta(request)
    _thread_or_404(state, thread_id)
    return 200, paginate(state.runs.get(thread_id, []), query)


@route("GET", r"/v1/threads/(?P<thread_id>[^/]+)/runs/(?P<run_id>[^/]+)/steps")
def list_run_steps(
    state: SandboxState, request: SandboxHandler, query: Query, thread_id: str, run_id: str
) -> Reply:
    _require_beta(request)
    _thread_or_404(state, thread_id)
    if run_id not in {run["id"] for run in state.runs.get(thread_id, [])}:
        raise not_found("run", run_id)
    return 200, paginate(state.steps.get(run_id, []), query)


# --- conversations -----------------------------------------------------------------------------
def _invalid(error: InvalidRequest) -> ApiError:
    return ApiError(400, error.message, param=error.param, code=error.code)


def _conversation_or_404(state: SandboxState, conversation_id: str) -> JSON:
    if conversation_id not in state.conversations:
        raise not_found("conversation", conversation_id)
    return state.conversations[conversation_id]


@route("POST", r"/v1/conversations")
def create_conversation(state: SandboxState, request: SandboxHandler, query: Query) -> Reply:
    body = request.json_body()
    try:
        check_known_keys(body, {"items", "metadata"})
        validate_metadata(body.get("metadata"))
        validate_items(body.get("items"), required=False)
    except InvalidRequest as error:
        raise _invalid(error) from None
    return 200, state.create_conversation(body.get("metadata"), body.get("items"))


@route("GET", r"/v1/conversations/(?P<conversation_id>[^/]+)")
def retrieve_conversation(
    state: SandboxState, request: SandboxHandler, query: Query, conversation_id: str
) -> Reply:
    return 200, _conversation_or_404(state, conversation_id)["object"]


@route("DELETE", r"/v1/conversations/(?P<conversation_id>[^/]+)")
def delete_conversation(
    state: SandboxState, request: SandboxHandler, query: Query, conversation_id: str
) -> Reply:
    with state.lock:
        _conversation_or_404(state, conversation_id)
        del state.conversations[conversation_id]
        state.deleted_conversations.add(conversation_id)
    return 200, {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


@route("POST", r"/v1/conversations/(?P<conversation_id>[^/]+)/items")
def create_items(
    state: SandboxState, request: SandboxHandler, query: Query, conversation_id: str
) -> Reply:
    body = request.json_body()
    _conversation_or_404(state, conversation_id)
    try:
        check_known_keys(body, {"items"})
        validate_items(body.get("items"), required=True)
    except InvalidRequest as error:
        raise _invalid(error) from None
    stored = state.add_items(conversation_id, body["items"])
    return 200, {
        "object": "list",
        "data": stored,
        "first_id": stored[0]["id"],
        "last_id": stored[-1]["id"],
        "has_more": False,
    }


@route("DELETE", r"/v1/conversations/(?P<conversation_id>[^/]+)/items/(?P<item_id>[^/]+)")
def delete_item(
    state: SandboxState, request: SandboxHandler, query: Query, conversation_id: str, item_id: str
) -> Reply:
    with state.lock:
        conversation = _conversation_or_404(state, conversation_id)
        kept = [item for item in conversation["items"] if item["id"] != item_id]
        if len(kept) == len(conversation["items"]):
            raise not_found("item", item_id)
        conversation["items"] = kept
        return 200, conversation["object"]


@route("GET", r"/v1/conversations/(?P<conversation_id>[^/]+)/items")
def list_items(
    state: SandboxState, request: SandboxHandler, query: Query, conversation_id: str
) -> Reply:
    with state.lock:
        items = list(_conversation_or_404(state, conversation_id)["items"])
        if conversation_id in state.lost_items:
            raise ApiError(404, f"No items found for conversation '{conversation_id}'.")
    return 200, paginate(items, query, allow_before=False)


# The body of POST /responses/input_tokens (the spec's TokenCountsBody).
TOKEN_COUNT_KEYS = {
    "model", "input", "previous_response_id", "tools", "text", "reasoning", "truncation",
    "instructions", "conversation", "tool_choice", "parallel_tool_calls", "personality",
}  # fmt: skip


@route("POST", r"/v1/responses/input_tokens")
def count_input_tokens(state: SandboxState, request: SandboxHandler, query: Query) -> Reply:
    body = request.json_body()
    try:
        check_known_keys(body, TOKEN_COUNT_KEYS)
    except InvalidRequest as error:
        raise _invalid(error) from None
    conversation = body.get("conversation")
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    if conversation is not None and not isinstance(conversation, str):
        raise ApiError(400, "Invalid 'conversation': expected a string or an object with an id.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ApiError(400, "Missing required parameter: 'model'.", param="model")
    extra = body.get("input")
    extra = [{"content": extra}] if isinstance(extra, str) else list(extra or [])
    if conversation is None:
        tokens = 3 + sum(item_tokens(item) for item in extra)
    else:
        with state.lock:
            _conversation_or_404(state, conversation)
            if conversation in state.lost_items:
                raise not_found("conversation", conversation)
        tokens = state.input_tokens(conversation, extra)
    return 200, {"object": "response.input_tokens", "input_tokens": tokens}


# --- the server --------------------------------------------------------------------------------
class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go as two writes; no 40 ms stalls
    server_version = "ConsoleSandbox/1"
    state: SandboxState  # set on the subclass made by SandboxServer
    azure: bool = False  # Azure mode, set on the subclass made by SandboxServer
    _body: bytes = b""
    _pending: Answer | None = None  # what a fault answers instead of the handler

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the state
        pass

    def json_body(self) -> JSON:
        raw = self._body
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "The JSON body of your request must be an object.")
        return body

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        if url.path.startswith("/_sandbox/"):
            return self._introspect(method, url)
        match = self._match(method, url.path)
        route_name = match[0].__name__ if match else "unknown"
        if self.azure and (refusal := self._azure_refusal(method, url)):
            self.state.record(method, route_name, refusal[0], "azure_refused")
            return self._send(*refusal)
        fault = self._pre_fault(method, url.path)
        if fault in ("drop", "drop_before_write"):
            self.state.record(method, route_name, 0, fault)
            return self._drop()
        status, body, error_headers = self._handle(method, url, match)
        if fault in ("drop_after_write", "slow_drop_after_write") and status == 200:
            self.state.record(method, route_name, 0, fault)
            return self._drop()
        self.state.record(method, route_name, status, fault if status >= 400 else None)
        self._send(status, body, error_headers)

    def _match(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        for route_method, pattern, handler in ROUTES:
            found = pattern.match(path)
            if found and route_method == method:
                return handler, found.groupdict()
        return None

    def _pre_fault(self, method: str, path: str) -> str | None:
        """Latency, cap and injected faults that answer before the handler runs."""
        faults = self.state.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        capped, wait = self.state.over_rpm_cap()
        if capped:
            self._pending = self._rate_limited(wait, "Rate limit reached for requests")
            return "rpm_cap"
        if faults.max_body_bytes and len(self._body) > faults.max_body_bytes:
            error = ApiError(
                413,
                f"Request body of {len(self._body)} bytes is larger than the maximum of "
                f"{faults.max_body_bytes} bytes.",
                code="request_too_large",
            )
            self._pending = (413, error.body, {})
            return "too_large"
        fault = self.state.choose_fault(method, path, self._body)
        if fault == "slow":  # a request that takes long, then is answered as usual
            time.sleep(faults.slow_seconds)
            return None
        if fault == "slow_drop_after_write":  # held, then applied and its answer dropped
            time.sleep(faults.slow_seconds)
        if fault == "rate_limit":
            self._pending = self._rate_limited(
                faults.retry_after_seconds, "Rate limit reached (injected)"
            )
        elif fault == "auth_error":
            error = ApiError(401, "Incorrect API key provided (injected).", code="invalid_api_key")
            self._pending = (401, error.body, {})
        elif fault == "server_error":
            self._pending = (
                500,
                {
                    "error": {
                        "message": "The server had an error while processing your request.",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                },
                {},
            )
        return fault

    def _azure_refusal(self, method: str, url: SplitResult) -> Answer | None:
        """Azure's answer to a request without an api-version (recorded: the console must never
        send one) or without credentials; None when the request may go on."""
        versions = parse_qs(url.query).get("api-version")
        if not versions:
            with self.state.lock:
                self.state.missing_api_version.append(f"{method} {url.path}")
            return 400, _azure_error("BadRequest", MISSING_API_VERSION), {}
        if versions[0] not in AZURE_API_VERSIONS:
            supported = ", ".join(f"'{v}'" for v in AZURE_API_VERSIONS)
            message = (
                f"Unsupported api version '{versions[0]}'. The supported versions are {supported}"
            )
            return 400, _azure_error("UnsupportedApiVersionValue", message), {}
        key = self.headers.get("api-key")
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        with self.state.lock:
            if key:
                self.state.credentials_seen["api-key", key] += 1
            if scheme == "Bearer" and token:
                self.state.credentials_seen["bearer", token] += 1
        if not key and not (scheme == "Bearer" and token):
            return 401, _azure_error("401", AZURE_ACCESS_DENIED), {}
        return None

    def _rate_limited(self, wait: float, message: str) -> Answer:
        error = ApiError(429, message, type_="requests", code="rate_limit_exceeded")
        return 429, error.body, {"retry-after": str(max(1, round(wait))),
                                 "retry-after-ms": str(int(wait * 1000))}  # fmt: skip

    def _handle(
        self, method: str, url: SplitResult, match: tuple[Handler, dict[str, str]] | None
    ) -> Answer:
        pending = self._pending
        if pending:
            self._pending = None
            return pending
        if not self.azure and not (self.headers.get("Authorization") or "").startswith("Bearer "):
            error = ApiError(401, "You didn't provide an API key.", code="missing_api_key")
            return 401, error.body, {}
        if not match:
            error = ApiError(404, f"Invalid URL ({method} {url.path})", code="unknown_url")
            return 404, error.body, {}
        handler, params = match
        try:
            status, body = handler(self.state, self, parse_qs(url.query), **params)
        except ApiError as error:
            return error.status, error.body, {}
        return status, body, {}

    def _send(self, status: int, body: Any, extra_headers: dict[str, str]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        limit, remaining = self.state.remaining_requests()
        self.send_header("x-ratelimit-limit-requests", str(limit))
        self.send_header("x-ratelimit-remaining-requests", str(remaining))
        self.send_header("x-ratelimit-reset-requests", "60s" if remaining == 0 else "1s")
        for name, value in extra_headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _drop(self) -> None:
        self.close_connection = True
        self.connection.close()

    def _introspect(self, method: str, url: SplitResult) -> None:
        if method == "GET" and url.path == "/_sandbox/health":
            return self._send(200, {"ok": True}, {})
        if method == "GET" and url.path == "/_sandbox/state":
            items = parse_qs(url.query).get("items", ["1"])[0] != "0"
            snapshot = self.state.snapshot(include_items=items)
            return self._send(200, {**snapshot, "azure": self.azure}, {})
        turns = TURNS_PATH.match(url.path)
        if method == "POST" and turns:
            return self._add_turns(turns["thread_id"])
        if method == "POST" and url.path == "/_sandbox/trickle":
            return self._trickle()
        told = re.fullmatch(r"/_sandbox/conversations/([^/]+)", url.path)
        if method == "POST" and told:
            return self._tell(told.group(1))
        if method == "POST" and url.path == "/_sandbox/faults":
            try:
                self.state.configure_faults(**self.json_body())
            except (ValueError, TypeError) as error:
                return self._send(400, {"error": {"message": str(error)}}, {})
            return self._send(200, {"ok": True}, {})
        return self._send(404, {"error": {"message": "unknown sandbox endpoint"}}, {})

    def _add_turns(self, thread_id: str) -> None:
        """POST /_sandbox/threads/{id}/turns {"count": 1, "tool": "function"}: add `count`
        exchanges (user message, run, tool-call step, reply) to the thread; answers them."""
        try:
            body = self.json_body()
            count = int(body.get("count", 1))
            tool = body.get("tool", "function")
            if not 1 <= count <= 100 or not (tool is None or isinstance(tool, str)):
                raise ValueError("count must be 1 to 100 and tool a tool type or null")
            added = [self.state.add_turn(thread_id, tool) for _ in range(count)]
        except KeyError:
            return self._send(404, {"error": {"message": f"no thread {thread_id}"}}, {})
        except (ApiError, ValueError, TypeError) as error:
            return self._send(400, {"error": {"message": str(error)}}, {})
        return self._send(200, {"thread_id": thread_id, "added": added}, {})

    def _trickle(self) -> None:
        """POST /_sandbox/trickle {"every_seconds": 2, "tools": ["function", …]}: add a turn to
        a random thread on that timer (0 stops it)."""
        try:
            body = self.json_body()
            every = float(body.get("every_seconds", 0))
            tools = body.get("tools") or ["function"]
            if not isinstance(tools, list) or every < 0:
                raise ValueError("every_seconds must be 0 or more and tools a list")
            self.state.start_trickle(every, tools, seed=int(body.get("seed", 0)))
        except (ApiError, ValueError, TypeError) as error:
            return self._send(400, {"error": {"message": str(error)}}, {})
        return self._send(200, {"ok": True, "every_seconds": every}, {})

    def _tell(self, conversation_id: str) -> None:
        """Lose a conversation (how) and/or report a given size for it from now on."""
        body = self.json_body()
        unknown = set(body) - {"lose", "input_tokens"}
        if unknown or not body:
            return self._send(400, {"error": {"message": "give lose and/or input_tokens"}}, {})
        if conversation_id not in self.state.conversations:
            return self._send(404, {"error": {"message": "unknown conversation"}}, {})
        try:
            if "input_tokens" in body:
                self.state.token_sizes[conversation_id] = int(body["input_tokens"])
            if "lose" in body:
                self.state.lose(conversation_id, body["lose"])
        except (TypeError, ValueError) as error:
            return self._send(400, {"error": {"message": str(error)}}, {})
        return self._send(200, {"ok": True}, {})


TURNS_PATH = re.compile(r"^/_sandbox/threads/(?P<thread_id>[^/]+)/turns$")
AZURE_API_VERSIONS = ("v1", "2025-05-01", "2025-05-15-preview", "preview")
MISSING_API_VERSION = "Missing required query parameter: api-version"
AZURE_ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
    "valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)


def _azure_error(code: str, message: str) -> JSON:
    """Azure's error envelope: a code and a message."""
    return {"error": {"code": code, "message": message}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class SandboxServer:
    """Start with `with SandboxServer(port=0) as sandbox:`; `sandbox.url` is the /v1 base URL."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state: SandboxState | None = None,
        *,
        azure: bool = False,
    ) -> None:
        self.state = state or SandboxState()
        self.azure = azure
        handler = type("Handler", (SandboxHandler,), {"state": self.state, "azure": azure})
        self.httpd = _Server((host, port), handler)
        bound_host, bound_port = self.httpd.server_address[:2]
        self.host, self.port = str(bound_host), int(bound_port)
        self.url = f"http://{self.host}:{self.port}/v1"
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.stop_trickle()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

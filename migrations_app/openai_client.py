"""The one seam to the outside world: client construction, paging, error classification.

Every OpenAI call the console makes goes through this module. Where each side is and how it
authenticates comes from `connections` (with no key and no Entra ID, the built-in sandbox).
"""

import contextvars
import functools
import os
import queue
import random
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import httpcore2
import httpx2
import openai
import orjson
from django.conf import settings
from openai._constants import INITIAL_RETRY_DELAY, MAX_RETRY_AFTER_DELAY, MAX_RETRY_DELAY

from migrations_app import azure_auth, connections
from migrations_app.models import ErrorKind

if TYPE_CHECKING:
    from migrations_app.ratelimit import SharedRateLimiter

T = TypeVar("T")
Hooks = tuple[tuple[str, tuple[Callable[..., None], ...]], ...]  # hashable: clients are cached
PAGE_SIZE = 100  # the largest page the list endpoints allow


# The check a request must pass just before its bytes leave (set per request by the upload): a
# worker frozen after its last lease check, or past its slot in the request budget, finds out
# here, not after the server applied its write.
_send_guard: ContextVar[Callable[[str], None] | None] = ContextVar("send_guard", default=None)
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class SlotMissed(Exception):
    """A request that missed its slot in the request budget; it was not sent."""


@contextmanager
def guarded_sends(check: Callable[[str], None] | None) -> Iterator[None]:
    """Run `check(method)` right before any request this thread sends, inside the HTTP client;
    an exception from it stops the request before it is sent (and comes out of the SDK call as
    it is, or as the cause of an APIConnectionError)."""
    token = _send_guard.set(check)
    try:
        yield
    finally:
        _send_guard.reset(token)


def guarded_writes(check: Callable[[], None] | None) -> Any:
    """`guarded_sends` with a check for writes only (None: no check at all)."""
    if check is None:
        return guarded_sends(None)
    return guarded_sends(lambda method: check() if method in WRITE_METHODS else None)


def _check_send(request: httpx2.Request) -> None:
    check = _send_guard.get()
    if check is not None:
        check(request.method)


# Every request to the source waits for a slot in the source's own budget
# (ASSISTANTS_REQUESTS_PER_MINUTE), whoever sends it: a staff fetch or a migration. A migration
# sets the check its lease must pass (the wait plus the request's timeout) and its sleeper.
_read_guard: ContextVar[tuple[Callable[[float], None], Callable[[float], object]] | None] = (
    ContextVar("read_guard", default=None)
)


@contextmanager
def guarded_reads(
    check: Callable[[float], None], sleeper: Callable[[float], object] = time.sleep
) -> Iterator[None]:
    """Run `check(wait)` before each source request of this thread, once its slot in the source
    budget is known and before waiting for it; an exception stops the request unsent."""
    token = _read_guard.set((check, sleeper))
    try:
        yield
    finally:
        _read_guard.reset(token)


def _source_limiter() -> "SharedRateLimiter":
    from migrations_app import ratelimit

    return ratelimit.shared(ratelimit.SOURCE)


# A slot taken ahead by the thread that started this read (parallel step reads): its start time.
_read_slot: ContextVar[list[float] | None] = ContextVar("read_slot", default=None)


def _pace_source(request: httpx2.Request) -> None:
    limiter = _source_limiter()
    check, sleeper = _read_guard.get() or (None, time.sleep)
    slot = _read_slot.get()
    if slot:  # taken and checked by the thread that handed this read over; used once
        wait = slot.pop() - limiter.clock()
    else:
        wait = limiter.reserve()
        if check is not None:
            check(wait)
    if wait > 0:
        sleeper(wait)


# Where a read handed over by another thread notes a 429, for that thread to pass on.
_read_throttled: ContextVar[list[float] | None] = ContextVar("read_throttled", default=None)


def _source_answered(response: httpx2.Response) -> None:
    """A 429 from the source slows every worker, as one from the destination does."""
    if response.status_code == 429:
        seconds = _retry_after(response) or 1.0
        noted = _read_throttled.get()
        if noted is None:
            _source_limiter().slow_down(seconds)
        else:
            noted.append(seconds)


# --- the total time of a request ----------------------------------------------------------------
# httpx applies its timeout to each phase of a request (connect, every write, every read) on its
# own, so a request can last several times API_TIMEOUT_SECONDS, and one whose thread froze after
# its lease was checked reaches the server long after. Each request gets a deadline as it is
# about to leave (the last request hook, after the write guard and the source's pacing): every
# socket operation waits at most until then, and one that would start after it raises a timeout
# instead, so a request that missed its deadline is never sent. The lease the guard checked
# outlives the deadline (DESIGN.md, "The lease").
_deadline: ContextVar[float | None] = ContextVar("request_deadline", default=None)


def _start_deadline(request: httpx2.Request) -> None:
    _deadline.set(time.monotonic() + settings.API_TIMEOUT_SECONDS)


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error(f"the request ran past its {settings.API_TIMEOUT_SECONDS} s deadline")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore2.NetworkStream):
    def __init__(self, stream: httpcore2.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore2.NetworkStream:  # fmt: skip
        timeout = _left(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore2.NetworkBackend):
    """The network backend the pool had, with every operation bounded by the deadline."""

    def __init__(self, backend: httpcore2.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None, socket_options: Any = None
                    ) -> httpcore2.NetworkStream:  # fmt: skip
        timeout = _left(timeout, httpcore2.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore2.NetworkStream:  # fmt: skip
        timeout = _left(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _http_client(event_hooks: dict[str, list[Callable[..., None]]]) -> httpx2.Client:
    """The SDK's own httpx client (its defaults, proxies from the environment), with our request
    hooks and every connection pool's network bounded by the request deadline (set by the last
    request hook)."""
    event_hooks = {**event_hooks, "request": [*event_hooks.get("request", []), _start_deadline]}
    client = openai.DefaultHttpxClient(event_hooks=event_hooks)
    for transport in [client._transport, *client._mounts.values()]:
        pool = getattr(transport, "_pool", None)
        if pool is not None:
            pool._network_backend = _DeadlineBackend(pool._network_backend)
    return client


def _build(
    connection: connections.Connection, max_retries: int, hooks: Hooks | None = None
) -> openai.OpenAI:
    """One client per configuration and process: building one costs an SSL context (tens of
    milliseconds of CPU), and a client is safe to share between threads."""
    return _client(connection, max_retries, settings.API_TIMEOUT_SECONDS, hooks)


# The SDK's generic client always adds `Authorization: Bearer <api_key>` and refuses a request
# without an Authorization header, so an `api-key` connection passes a placeholder as its
# api_key, sends the key in its default `api-key` header, and this hook takes the bearer header
# off before the request leaves (the SDK's own Azure client strips `api-key` on redirects with
# the same kind of hook).
API_KEY_PLACEHOLDER = "key-in-api-key-header"


def _api_key_header_only(request: httpx2.Request) -> None:
    request.headers.pop("Authorization", None)


def _credentials(connection: connections.Connection) -> tuple[Any, dict[str, str]]:
    """(the SDK's api_key: a string, or a callable it calls before every request; headers)."""
    if connection.auth == connections.ENTRA:
        assert connection.entra_scope
        return functools.partial(azure_auth.bearer_token, connection.entra_scope), {}
    if connection.auth == connections.API_KEY:
        assert connection.key
        return API_KEY_PLACEHOLDER, {"api-key": connection.key}
    return connection.key, {}


@functools.lru_cache(maxsize=32)
def _client(
    connection: connections.Connection, max_retries: int, timeout: float, hooks: Hooks | None
) -> openai.OpenAI:
    event_hooks = {name: list(functions) for name, functions in hooks or ()}
    if connection.auth == connections.API_KEY:
        event_hooks.setdefault("request", []).append(_api_key_header_only)
    api_key, headers = _credentials(connection)
    return openai.OpenAI(
        api_key=api_key,
        base_url=connection.base_url,
        default_headers=headers or None,
        default_query=connection.default_query or None,
        max_retries=max_retries,
        timeout=timeout,
        http_client=_http_client(event_hooks),
    )


SOURCE_HOOKS = (("request", (_pace_source,)), ("response", (_source_answered,)))
DESTINATION_HOOKS = (("request", (_check_send,)),)


def source_client(max_retries: int = 2) -> openai.OpenAI:
    """The Assistants-shaped source. Reads only, so the SDK's own retries are safe here."""
    return _build(connections.source(), max_retries, SOURCE_HOOKS)


def destination_client() -> openai.OpenAI:
    """The Conversations destination. SDK retries are off: a retried POST can duplicate items, so
    the upload retries in its own code, where it can check what was applied first."""
    return _build(connections.destination(), 0, DESTINATION_HOOKS)


@contextmanager
def assistants_api() -> Iterator[None]:
    """Every client.beta.* call warns that the Assistants API is deprecated; we know."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"(The Assistants API is deprecated|deprecated$)",
            category=DeprecationWarning,
        )
        yield


def raw_json(resource: Any, method: str, *args: Any, **params: Any) -> Any:
    """The API's JSON exactly as it answered, without building the SDK's models: the mirror
    keeps the source objects whole, and parsing thousands of them twice costs CPU for nothing."""
    response = getattr(resource.with_raw_response, method)(*args, **params)
    return orjson.loads(response.http_response.content)


def paginate(
    fetch_page: Callable[[str | None], dict[str, Any]], after: str | None = None
) -> Iterator[dict[str, Any]]:
    """Every object of a cursor-paged list, oldest first: `fetch_page(after)` returns one page
    (the API's list envelope) of the objects after the id `after` (None: from the start)."""
    while True:
        page = fetch_page(after)
        yield from page["data"]
        if not page.get("has_more") or not page["data"]:
            return
        after = page["data"][-1]["id"]


def list_page(resource: Any, *args: Any, after: str | None = None, **params: Any) -> Any:
    """One page of up to 100 objects, oldest first, after the id `after`."""
    cursor = {"after": after} if after else {}
    return raw_json(resource, "list", *args, order="asc", limit=PAGE_SIZE, **cursor, **params)


def list_all(resource: Any, *args: Any, **params: Any) -> Iterator[dict[str, Any]]:
    """Every object of a list endpoint, oldest first, in pages of 100."""
    return paginate(lambda after: list_page(resource, *args, after=after, **params))


ASSISTANTS_BETA = {"OpenAI-Beta": "assistants=v2"}


def _source_json(
    client: openai.OpenAI, path: str, after: str | None = None, *, page: bool = True
) -> Any:
    """GET a source object or one page of a list (100 objects, oldest first, after the id
    `after`), as the API's JSON (`send`: the beta resources' methods cost a deprecation-warnings
    context, the SDK's param transform and its models per call, the CPU of a fetch, for JSON the
    mirror keeps whole anyway)."""
    params: dict[str, Any] = {"order": "asc", "limit": PAGE_SIZE} if page else {}
    if after:
        params["after"] = after
    return orjson.loads(send(client, "GET", path, params=params, headers=ASSISTANTS_BETA).content)


# --- the requests of the engine's hot path ------------------------------------------------------
# The SDK builds a request from per-call options (a pydantic model copied for each attempt, the
# URL parsed four times, the headers merged anew), which cost as much CPU as httpx's own send: on
# the engine's hot path (the reads of a fetch or a check, the create, the writes, the listings)
# that was half of a request's CPU. `send` sends what the SDK would, through the SDK's own httpx
# client (so every request hook, the send guard, the source's pacing and the deadline apply as
# before), with the SDK's headers, credentials, default query, timeout and retry policy, and
# raises the SDK's exceptions.
@dataclass(frozen=True)
class _Wire:
    http: httpx2.Client
    base: str  # the base URL, ending in "/"
    headers: tuple[tuple[str, str], ...]  # the SDK's default headers, credentials left out
    query: tuple[tuple[str, str], ...]  # the default query (an API version)
    timeout: dict[str, float | None]
    key: Callable[[], str] | None  # an Entra ID token provider, asked before every request
    bearer: str  # else the key, sent as a bearer token (an api-key's placeholder: a hook drops it)


@functools.lru_cache(maxsize=32)
def _wire(client: openai.OpenAI) -> _Wire:
    headers = {
        name: value
        for name, value in client.default_headers.items()
        if isinstance(value, str) and name.lower() != "authorization"
    }
    query = {name: str(value) for name, value in client.default_query.items()}
    return _Wire(
        http=client._client,
        base=str(client.base_url),
        headers=tuple(headers.items()),
        query=tuple(query.items()),
        timeout=httpx2.Timeout(client.timeout).as_dict(),
        key=client._api_key_provider,
        bearer=client.api_key,
    )


def send(
    client: openai.OpenAI,
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx2.Response:
    """One request as the SDK sends it, retried as the SDK retries it (`client.max_retries`: the
    source's reads; the destination's are 0); returns the answer, or raises what the SDK raises
    (a status error by its own mapping, APITimeoutError, APIConnectionError), an exception of a
    request hook as it is."""
    wire = _wire(client)
    query = [*wire.query, *_query(params or {})]
    url = wire.base + path.lstrip("/") + ("?" + urlencode(query) if query else "")
    content = None if body is None else orjson.dumps(body)
    for retry in range(client.max_retries + 1):
        fields = [*wire.headers, *(headers or {}).items()]
        if content is None:
            fields = [field for field in fields if field[0].lower() != "content-type"]
        key = wire.key() if wire.key is not None else wire.bearer
        fields += [("Authorization", f"Bearer {key}"), ("x-stainless-retry-count", str(retry))]
        request = httpx2.Request(method, url, headers=fields, content=content,
                                 extensions={"timeout": wire.timeout})  # fmt: skip
        last = retry == client.max_retries
        try:
            response = wire.http.send(request)
        except httpx2.TimeoutException as error:
            if last:
                raise openai.APITimeoutError(request=request) from error
            time.sleep(_retry_delay(client, retry, None))
            continue
        except httpx2.RequestError as error:
            if last:
                raise openai.APIConnectionError(request=request) from error
            time.sleep(_retry_delay(client, retry, None))
            continue
        if response.is_success:
            return response
        if last or not client._should_retry(response):
            raise client._make_status_error_from_response(response)
        time.sleep(_retry_delay(client, retry, response.headers))
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _query(params: dict[str, Any]) -> list[tuple[str, str]]:
    """Parameters as the SDK encodes them: lists as `name[]` (OpenAI's array format)."""
    pairs = []
    for name, value in params.items():
        if isinstance(value, list | tuple):
            pairs += [(f"{name}[]", str(item)) for item in value]
        else:
            pairs.append((name, str(value)))
    return pairs


def _retry_delay(client: openai.OpenAI, retry: int, headers: httpx2.Headers | None) -> float:
    """The SDK's wait before its next attempt: the server's Retry-After (up to two minutes), else
    exponential backoff from half a second, at most 8 s, less up to a quarter of jitter."""
    after = client._parse_retry_after_header(headers)
    if after is not None and 0 < after <= MAX_RETRY_AFTER_DELAY:
        return after
    return min(INITIAL_RETRY_DELAY * 2.0**retry, MAX_RETRY_DELAY) * (1 - 0.25 * random.random())


def fetch_thread_bundle(
    client: openai.OpenAI,
    thread_id: str,
    on_thread: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The thread, all its messages and the run steps that carry tool calls, in export shape.

    Every read goes to the process's readers (`Reads`) as soon as it is known: the thread and
    the first pages of its messages and runs at once, each next page as the one before it
    comes back, and a run's steps as the page that lists the run does. Steps are listed per run
    (the API has no other way), and only for runs that have tools: a run without tools cannot
    have made tool calls. `on_thread(thread)` runs on this thread as soon as the thread object
    is back and the reads known by then are under way (`Reads.later`)."""
    base = f"/threads/{thread_id}"
    reads = Reads()
    thread: dict[str, Any] = {}
    messages: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    steps: dict[str, list[dict[str, Any]]] = {}  # by run, in the runs' order

    def steps_of(page: list[dict[str, Any]]) -> None:
        for run in page:
            if run.get("tools"):
                steps[run["id"]] = []
                _list_into(reads, client, f"{base}/runs/{run['id']}/steps", steps[run["id"]])

    def thread_read(got: dict[str, Any]) -> None:
        thread.update(got)
        if on_thread is not None:
            reads.later(functools.partial(on_thread, thread))

    reads.add(functools.partial(_source_json, client, base, page=False), thread_read)
    _list_into(reads, client, f"{base}/messages", messages)
    _list_into(reads, client, f"{base}/runs", runs, then=steps_of)
    reads.run()
    run_steps = [step for listed in steps.values() for step in listed if _tool_calls(step)]
    return {"thread": thread, "messages": messages, "runs": runs, "run_steps": run_steps}


def _tool_calls(step: dict[str, Any]) -> bool:
    return step.get("type") == "tool_calls"


def _list_into(
    reads: "Reads",
    client: openai.OpenAI,
    path: str,
    into: list[dict[str, Any]],
    *,
    then: Callable[[list[dict[str, Any]]], None] | None = None,
    after: str | None = None,
) -> None:
    """Read a list into `into`, oldest first, a page at a time: each page's read is added to
    `reads` once the page before it is back (ahead of the reads already waiting: the pages of a
    list are a chain, the longest path of a fetch). `then(objects)` sees each page."""

    def on_page(page: dict[str, Any]) -> None:
        into.extend(page["data"])
        if page.get("has_more") and page["data"]:
            _list_into(reads, client, path, into, then=then, after=page["data"][-1]["id"])
        if then is not None:
            then(page["data"])

    reads.add(
        functools.partial(_source_json, client, path, after), on_page, first=after is not None
    )


# --- reads handed to the process's reader threads -----------------------------------------------
READS_IN_FLIGHT = 16  # one thread's reads in flight at once (a fetch's pages and steps, a check)
# The process's reader threads, shared by all its threads. 64 cost more CPU for the same wall
# time: httpcore's pool looks at every connection for each request, and more threads switch more.
READERS = 32


class _Readers:
    """The process's reader threads. Daemons: a read in flight never holds the process's exit
    (a stopping worker waits for its own threads, not for these). A thread hands a read over
    only once it holds one of `free`, so a read never waits in the queue past its slot."""

    def __init__(self, size: int) -> None:
        self.pid = os.getpid()
        self.free = threading.BoundedSemaphore(size)
        self.jobs: queue.SimpleQueue[tuple[Future[Any], contextvars.Context, Callable[[], Any]]]
        self.jobs = queue.SimpleQueue()
        self.threads = {
            threading.Thread(target=self._serve, name=f"reads_{index}", daemon=True)
            for index in range(size)
        }
        for thread in self.threads:
            thread.start()

    def _serve(self) -> None:
        while True:
            future, context, read = self.jobs.get()
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(context.run(_read_in, read))
                    except BaseException as error:
                        future.set_exception(error)
            finally:
                self.free.release()


def _read_in(read: Callable[[], T]) -> T:
    """A read on a reader thread, in the context of the thread that handed it over; a database
    connection it had to open (a retry taking its own slot) is closed with it."""
    from django.db import connections as databases

    try:
        return read()
    finally:
        for database in databases.all(initialized_only=True):
            database.close()


_readers_now: _Readers | None = None
_readers_lock = threading.Lock()


def _readers() -> _Readers:
    global _readers_now
    with _readers_lock:
        if _readers_now is None or _readers_now.pid != os.getpid():
            _readers_now = _Readers(READERS)
        return _readers_now


class Reads:
    """Reads a thread hands to the process's readers, at most READS_IN_FLIGHT at once, each as
    soon as it is known and a reader is free. This thread takes each read's slot in the source
    budget and passes its lease check (`guarded_reads`) as it hands the read over, then sees
    each answer in turn (`on_done`, which may add reads) and passes on the 429s the reads met:
    the readers touch neither the budget nor the lease. The first failure stops the reads not
    yet handed over, and is raised once those in flight are back."""

    def __init__(self) -> None:
        self.limiter = _source_limiter()
        self.check = (_read_guard.get() or (None, None))[0]
        self.waiting: deque[tuple[Callable[[], Any], Callable[[Any], None]]] = deque()
        self.in_flight: dict[Future[Any], Callable[[Any], None]] = {}
        self.throttled: list[float] = []
        self.deferred: deque[Callable[[], None]] = deque()

    def add(self, read: Callable[[], T], on_done: Callable[[T], None], first: bool = False) -> None:
        (self.waiting.appendleft if first else self.waiting.append)((read, on_done))

    def later(self, work: Callable[[], None]) -> None:
        """Run `work` on this thread once the reads known now are handed over, so that it goes
        on while they are in flight. It must not raise: it keeps its own outcome."""
        self.deferred.append(work)

    def run(self) -> None:
        if threading.current_thread() in _readers().threads:  # a read that reads: no nesting
            while self.waiting or self.deferred:
                if self.waiting:
                    read, on_done = self.waiting.popleft()
                    on_done(read())
                else:
                    self.deferred.popleft()()
            return
        readers, failure = _readers(), None
        try:
            while self.waiting or self.in_flight or self.deferred:
                while failure is None and self.waiting and len(self.in_flight) < READS_IN_FLIGHT:
                    if not readers.free.acquire(blocking=not self.in_flight):
                        break
                    try:
                        self._hand_over(readers, *self.waiting.popleft())
                    except BaseException as error:
                        readers.free.release()
                        failure = error
                if failure is not None:
                    self.waiting.clear()
                    self.deferred.clear()
                    if not self.in_flight:
                        break
                while self.deferred:
                    self.deferred.popleft()()
                if not self.in_flight:
                    continue
                done, _ = wait(self.in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    on_done = self.in_flight.pop(future)
                    self._pass_on_429s()
                    if failure is None:
                        try:
                            on_done(future.result())
                        except BaseException as error:
                            failure = error
        finally:
            self._pass_on_429s()
        if failure is not None:
            raise failure

    def _hand_over(
        self, readers: _Readers, read: Callable[[], Any], on_done: Callable[[Any], None]
    ) -> None:
        wait = self.limiter.reserve()
        if self.check is not None:
            self.check(wait)
        context = contextvars.copy_context()
        context.run(_read_slot.set, [self.limiter.clock() + wait])
        context.run(_read_throttled.set, self.throttled)
        future: Future[Any] = Future()
        self.in_flight[future] = on_done
        readers.jobs.put((future, context, read))

    def _pass_on_429s(self) -> None:
        while self.throttled:
            self.limiter.slow_down(self.throttled.pop())


def concurrently(calls: list[Callable[[], T]]) -> list[T]:
    """Run the calls on the process's readers, each as a reader is free, and return their
    results in order (the first failure is raised once all are back). Unlike `Reads`, no source
    budget is taken: each call paces itself (a destination read through `call_api`)."""
    if len(calls) <= 1 or threading.current_thread() in _readers().threads:
        return [call() for call in calls]
    readers, futures = _readers(), []
    for call in calls:
        readers.free.acquire()
        future: Future[T] = Future()
        readers.jobs.put((future, contextvars.copy_context(), call))
        futures.append(future)
    wait(futures)
    return [future.result() for future in futures]


def in_parallel(reads: list[Callable[[], T]]) -> list[T]:
    """Run the reads on the process's readers (`Reads`); their results in order."""
    if len(reads) <= 1:
        return [read() for read in reads]
    results: list[Any] = [None] * len(reads)
    handed = Reads()
    for index, read in enumerate(reads):
        handed.add(read, functools.partial(results.__setitem__, index))
    handed.run()
    return results


def messages_after(client: openai.OpenAI, thread_id: str, after: str | None) -> dict[str, Any]:
    """One page (up to 100, oldest first) of a thread's messages after the message `after`: what
    a sync reads to learn whether a migrated thread has anything new (one request)."""
    return _source_json(client, f"/threads/{thread_id}/messages", after or None)


def delta_bundle(
    client: openai.OpenAI, thread_id: str, first_page: dict[str, Any]
) -> dict[str, Any]:
    """The messages of a thread from `first_page` on (a `messages_after` answer) and the
    tool-call steps of the runs that made them, each run's as soon as a page names it (see
    `Reads`): the part of the thread a sync appends. A run whose reply has not appeared yet is
    left for the next sync."""
    base = f"/threads/{thread_id}"
    reads = Reads()
    messages = list(first_page["data"])
    steps: dict[str, list[dict[str, Any]]] = {}

    def steps_of(page: list[dict[str, Any]]) -> None:
        for run_id in {m["run_id"] for m in page if m.get("run_id")} - steps.keys():
            steps[run_id] = []
            _list_into(reads, client, f"{base}/runs/{run_id}/steps", steps[run_id])

    steps_of(first_page["data"])
    if first_page.get("has_more") and first_page["data"]:
        after = first_page["data"][-1]["id"]
        _list_into(reads, client, f"{base}/messages", messages, then=steps_of, after=after)
    reads.run()
    run_steps = [step for run_id in sorted(steps) for step in steps[run_id] if _tool_calls(step)]
    return {"messages": messages, "run_steps": run_steps}


def add_items(
    client: openai.OpenAI, conversation_id: str, items: list[dict[str, Any]]
) -> list[str]:
    """POST /conversations/{id}/items; returns the new items' server ids, in order.

    Sent by `send`, not `conversations.items.create`: the items are already in wire shape (the
    conversion's tests validate them against the SDK's params and the spec), and the resource
    method's per-call param transform costs ~20 ms of CPU per 20-item batch, most of a worker's
    CPU. Errors raise the same SDK exceptions.
    """
    response = send(
        client, "POST", f"/conversations/{conversation_id}/items", body={"items": items}
    )
    return [item["id"] for item in orjson.loads(response.content)["data"]]


def create_conversation(client: openai.OpenAI, metadata: dict[str, str]) -> str:
    """POST /conversations with metadata only (an empty conversation); returns its id. By `send`,
    as add_items: the resource method's transform and response model cost more CPU than the
    request."""
    response = send(client, "POST", "/conversations", body={"metadata": metadata})
    return orjson.loads(response.content)["id"]


def items_page(
    client: openai.OpenAI,
    conversation_id: str,
    after: str | None = None,
    include: Sequence[str] = (),
) -> Any:
    """GET /conversations/{id}/items: one page of up to 100 items, oldest first, after the id
    `after`, as the API's JSON (by `send`: no page model built)."""
    params = {"order": "asc", "limit": PAGE_SIZE, **({"after": after} if after else {})}
    if include:
        params["include"] = list(include)
    return orjson.loads(
        send(client, "GET", f"/conversations/{conversation_id}/items", params=params).content
    )


def count_input_tokens(client: openai.OpenAI, model: str, conversation_id: str) -> int:
    """POST /responses/input_tokens: the tokens a response on this conversation would start
    with, for `model` (the continuation readiness check)."""
    response = client.post(
        "/responses/input_tokens",
        body={"model": model, "conversation": conversation_id},
        cast_to=httpx2.Response,
    )
    return int(orjson.loads(response.content)["input_tokens"])


def delete_item(client: openai.OpenAI, conversation_id: str, item_id: str) -> None:
    """DELETE /conversations/{id}/items/{item_id}: take back an item written by mistake."""
    client.conversations.items.delete(item_id, conversation_id=conversation_id)


def delete_conversation(client: openai.OpenAI, conversation_id: str) -> None:
    client.conversations.delete(conversation_id)


def list_assistants(client: openai.OpenAI) -> Iterator[dict[str, Any]]:
    with assistants_api():
        yield from list_all(client.beta.assistants)


@dataclass(frozen=True)
class ApiFailure:
    kind: str
    message: str
    http_status: int | None = None
    request_id: str = ""
    retry_after: float | None = None

    @property
    def is_permanent(self) -> bool:
        return self.kind in (
            ErrorKind.NOT_FOUND,
            ErrorKind.INVALID,
            ErrorKind.AUTH,
            ErrorKind.TOO_LARGE,
        )


_PERMANENT_BY_STATUS = {
    400: ErrorKind.INVALID,
    401: ErrorKind.AUTH,
    403: ErrorKind.AUTH,
    404: ErrorKind.NOT_FOUND,
    410: ErrorKind.NOT_FOUND,
    413: ErrorKind.TOO_LARGE,
    422: ErrorKind.INVALID,
}

_EXPLANATIONS = {
    ErrorKind.NOT_FOUND: "The API does not know this object (deleted, wrong id, or wrong project)",
    ErrorKind.INVALID: "The API rejected the request as invalid",
    ErrorKind.AUTH: "The API key was refused (check OPENAI_API_KEY and its project)",
    ErrorKind.TOO_LARGE: "The API refused the request as too large",
    ErrorKind.RATE_LIMITED: "The API asked us to slow down",
    ErrorKind.TRANSIENT: "A network or server error",
}


def _retry_after(response: httpx2.Response | None) -> float | None:
    if response is None:
        return None
    headers = response.headers
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        if headers.get("retry-after"):
            return float(headers["retry-after"])
    except ValueError:
        return None
    return None


def _api_message(error: Exception) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(getattr(error, "message", "") or error)


def is_ambiguous(error: Exception) -> bool:
    """True if a write that raised this may have been applied all the same."""
    if isinstance(error, openai.APIConnectionError):  # timeouts included
        return True
    return isinstance(error, openai.APIStatusError) and error.status_code >= 500


def classify(error: Exception) -> "ApiFailure":
    """An exception from the SDK as an ApiFailure a support person can read."""
    if isinstance(error, openai.APITimeoutError):
        return ApiFailure(ErrorKind.TRANSIENT, "The API did not answer in time")
    if isinstance(error, openai.APIConnectionError):
        return ApiFailure(ErrorKind.TRANSIENT, "The connection to the API failed or was dropped")
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        if status == 429:
            quota = getattr(error, "code", None) == "insufficient_quota"
            kind = ErrorKind.AUTH if quota else ErrorKind.RATE_LIMITED
        else:
            kind = _PERMANENT_BY_STATUS.get(status, ErrorKind.TRANSIENT)
        return ApiFailure(
            kind=kind,
            message=f"{_EXPLANATIONS[kind]} (HTTP {status}): {_api_message(error)}",
            http_status=status,
            request_id=error.request_id or "",
            retry_after=_retry_after(error.response),
        )
    raise error

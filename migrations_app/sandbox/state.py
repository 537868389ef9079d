"""The sandbox's in-memory world: source objects (read by the API, added to by `add_turn` while
it runs), conversations (written), and the faults to inject. One lock guards it all; the HTTP
layer holds it only for state changes."""

import itertools
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from migrations_app.sandbox import foundry
from migrations_app.sandbox.data import IdMaker, function_call, generate_turn

JSON = dict[str, Any]
# The agent of a live turn when the sandbox holds none.
SANDBOX_AGENT: JSON = {
    "id": "asst_sandbox",
    "model": "gpt-4o",
    "instructions": "You are a helpful support agent.",
    "tools": [{"type": "function", "function": {"name": "lookup_order", "parameters": {}}}],
}


@dataclass
class FaultConfig:
    """Probabilities are per request (0–1). `rpm_cap` limits requests per rolling minute."""

    latency_ms: float = 0
    rate_limit: float = 0  # answer 429 with retry-after and x-ratelimit-* headers
    retry_after_seconds: float = 1
    server_error: float = 0  # answer 500
    drop_before_write: float = 0  # POST/DELETE: close the connection, apply nothing
    drop_after_write: float = 0  # POST/DELETE: apply, then close without answering
    # POST/DELETE: hold the request slow_seconds (the client gives up), then apply it and close
    # without answering: a write that reaches the server late, its answer lost.
    slow_drop_after_write: float = 0
    rpm_cap: int = 0
    max_body_bytes: int = 0  # a larger request body is refused with 413 (0: no limit)
    slow_seconds: float = 5  # how long a scripted "slow" fault holds its request before answering
    seed: int = 0
    # Scripted faults for deterministic tests:
    # [{"kind", "method", "path_contains", "body_contains", "times"}].
    scripted: list[dict[str, Any]] = field(default_factory=list)


class SandboxState:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.assistants: dict[str, JSON] = {}
        self.threads: dict[str, JSON] = {}
        self.messages: dict[str, list[JSON]] = {}  # thread_id -> [message], ascending
        self.runs: dict[str, list[JSON]] = {}  # thread_id -> [run], ascending
        self.steps: dict[str, list[JSON]] = {}  # run_id -> [step], ascending
        # conv id -> {"object": conversation, "items": [item]}
        self.conversations: dict[str, JSON] = {}
        self.deleted_conversations: set[str] = set()
        # Told by a test or staff (POST /_sandbox/conversations/{id}): conversations whose items
        # answer 404 (Azure's reported loss), and sizes to report instead of the estimate.
        self.lost_items: set[str] = set()
        self.token_sizes: dict[str, int] = {}
        self.faults = FaultConfig()
        self._rng = random.Random(0)
        self._ids = itertools.count(1)
        self._recent: deque[float] = deque()  # request times for the rpm cap
        self.request_counts: Counter[str] = Counter()  # "METHOD route" -> count
        self.fault_counts: Counter[str] = Counter()
        # (time, method, route, status, fault)
        self.requests_log: deque[tuple[float, str, str, int, str | None]] = deque(maxlen=5000)
        # Azure mode: every request that came without an api-version ("METHOD path"), and the
        # credentials the requests carried: ("api-key" or "bearer", value) -> count.
        self.missing_api_version: list[str] = []
        self.credentials_seen: Counter[tuple[str, str]] = Counter()
        # Live threads: turns added while the sandbox runs, per thread.
        self.turns_added: Counter[str] = Counter()
        self._turn_rng = random.Random("turns")
        self._turn_ids = IdMaker(self._turn_rng)
        self._trickle: tuple[threading.Thread, threading.Event] | None = None

    # --- seeding ------------------------------------------------------------------------------
    def load_assistants(self, assistants: Iterable[JSON]) -> None:
        with self.lock:
            for assistant in assistants:
                self.assistants[assistant["id"]] = assistant

    def load_bundle(self, bundle: JSON) -> None:
        thread = bundle["thread"]
        with self.lock:
            self.threads[thread["id"]] = thread
            self.messages[thread["id"]] = list(bundle.get("messages") or [])
            self.runs[thread["id"]] = list(bundle.get("runs") or [])
            for step in bundle.get("run_steps") or []:
                self.steps.setdefault(step["run_id"], []).append(step)

    # --- live threads ---------------------------------------------------------------------------
    def add_turn(
        self, thread_id: str, tool: str | None = "function", created_at: int | None = None
    ) -> JSON:
        """Add one exchange to a thread, as a user and its agent would while the migration runs:
        a user message, the run answering it, a tool-call step (`tool`: "function" for an
        answered function call, a Foundry tool type, any other type name, or None for none) and
        the reply. At `created_at` (default: now, and never before the thread's last message).
        Returns the added objects in the export format; KeyError for an unknown thread."""
        with self.lock:
            thread = self.threads[thread_id]
            messages = self.messages.setdefault(thread_id, [])
            last = max((m["created_at"] for m in messages), default=thread.get("created_at") or 0)
            at = created_at if created_at is not None else max(int(time.time()), last + 1)
            calls = self._turn_calls(tool)
            turn = generate_turn(
                self._turn_rng, self._turn_ids, thread_id, self._agent_of(thread_id), at, calls
            )
            # The run and its steps before the messages: a reader never sees a reply whose run
            # is not listed yet.
            self.runs.setdefault(thread_id, []).extend(turn["runs"])
            for step in turn["run_steps"]:
                self.steps.setdefault(step["run_id"], []).append(step)
            messages.extend(turn["messages"])
            self.turns_added[thread_id] += 1
            return turn

    def _turn_calls(self, tool: str | None) -> list[JSON] | None:
        if tool is None:
            return None
        if tool == "function":
            return [function_call(self._turn_rng, self._turn_ids)]
        call_id = self._turn_ids("call_")
        if tool in foundry.TOOL_TYPES:
            return [foundry.tool_call(tool, call_id, self._turn_rng)]
        return [{"id": call_id, "type": tool, tool: {}}]

    def _agent_of(self, thread_id: str) -> JSON:
        """The agent that answered the thread last (any agent for a thread with no runs)."""
        runs = self.runs.get(thread_id) or []
        agent_id = runs[-1]["assistant_id"] if runs else None
        if agent_id in self.assistants:
            return self.assistants[agent_id]
        if self.assistants:
            return next(iter(self.assistants.values()))
        return SANDBOX_AGENT

    def start_trickle(
        self,
        every_seconds: float,
        tools: Sequence[str | None] = ("function",),
        seed: int = 0,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        """Add a turn to a thread picked at random every `every_seconds`, the tool calls taking
        `tools` in turn, until stop_trickle (or the server stops). `wait(seconds)` waits for the
        next tick and says whether to stop (a test passes its own)."""
        self.stop_trickle()
        if every_seconds <= 0 or not tools:
            return
        stop = threading.Event()
        rng = random.Random(seed)
        tick = wait or stop.wait

        def trickle() -> None:
            for count in itertools.count():
                if tick(every_seconds) or stop.is_set():
                    return
                with self.lock:
                    thread_ids = sorted(self.threads)
                if thread_ids:
                    self.add_turn(rng.choice(thread_ids), tools[count % len(tools)])

        worker = threading.Thread(target=trickle, name="sandbox-trickle", daemon=True)
        self._trickle = (worker, stop)
        worker.start()

    def stop_trickle(self) -> None:
        if self._trickle:
            worker, stop = self._trickle
            stop.set()
            worker.join()
            self._trickle = None

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08d}{self._rng.getrandbits(64):016x}"

    # --- faults -------------------------------------------------------------------------------
    def configure_faults(self, **values: Any) -> None:
        with self.lock:
            config = asdict(self.faults)
            unknown = set(values) - set(config)
            if unknown:
                raise ValueError(f"unknown fault settings: {sorted(unknown)}")
            config.update(values)
            self.faults = FaultConfig(**config)
            self._rng = random.Random(self.faults.seed)

    def choose_fault(self, method: str, path: str, body: bytes = b"") -> str | None:
        """The fault to inject for this request, or None. Scripted faults come first."""
        with self.lock:
            for script in self.faults.scripted:
                if script.get("times", 1) <= 0:
                    continue
                if script.get("method", method) != method:
                    continue
                if script.get("path_contains", "") not in path:
                    continue
                if script.get("body_contains", "").encode() not in body:
                    continue
                script["times"] = script.get("times", 1) - 1
                return script["kind"]
            faults = self.faults
            is_write = method in ("POST", "DELETE")
            roll = self._rng.random()
            for kind, chance in (
                ("rate_limit", faults.rate_limit),
                ("server_error", faults.server_error),
                ("drop_before_write" if is_write else "drop", faults.drop_before_write),
                ("drop_after_write" if is_write else None, faults.drop_after_write),
                ("slow_drop_after_write" if is_write else None, faults.slow_drop_after_write),
            ):
                if kind and roll < chance:
                    return kind
                roll -= chance
            return None

    def over_rpm_cap(self, now: float | None = None) -> tuple[bool, float]:
        """True if this request exceeds the rolling-minute cap (then it is not counted)."""
        with self.lock:
            cap = self.faults.rpm_cap
            if not cap:
                return False, 0
            now = now or time.monotonic()
            while self._recent and self._recent[0] <= now - 60:
                self._recent.popleft()
            if len(self._recent) >= cap:
                return True, max(0.05, self._recent[0] + 60 - now)
            self._recent.append(now)
            return False, 0

    def remaining_requests(self) -> tuple[int, int]:
        cap = self.faults.rpm_cap or 10_000
        return cap, max(0, cap - len(self._recent))

    # --- conversations ------------------------------------------------------------------------
    def create_conversation(
        self, metadata: dict[str, str] | None, items: list[JSON] | None
    ) -> JSON:
        with self.lock:
            conversation_id = self.new_id("conv_")
            conversation: JSON = {
                "id": conversation_id,
                "object": "conversation",
                "created_at": int(time.time()),
                "metadata": metadata or {},
            }
            self.conversations[conversation_id] = {"object": conversation, "items": []}
            self.add_items(conversation_id, items or [])
            return conversation

    def add_items(self, conversation_id: str, items: list[JSON]) -> list[JSON]:
        with self.lock:
            stored = [self._stored_item(item) for item in items]
            self.conversations[conversation_id]["items"].extend(stored)
            return stored

    def _stored_item(self, item: JSON) -> JSON:
        """An input item as the API stores and lists it: a server id and a status."""
        kind = item.get("type", "message")
        stored = {**item, "type": kind}
        if kind == "message":
            content = item["content"]
            if isinstance(content, str):
                part = "output_text" if item["role"] == "assistant" else "input_text"
                content = [{"type": part, "text": content}]
            stored["content"] = [
                {**p, "annotations": p.get("annotations", [])} if p["type"] == "output_text" else p
                for p in content
            ]
            prefix = "msg_"
        elif kind == "function_call":
            prefix = "fc_"
        else:
            prefix = "item_"
        stored["id"] = self.new_id(prefix)
        stored["status"] = "completed"
        return stored

    # --- told to lose a conversation, or to report a size --------------------------------------
    LOSSES = ("conversation", "items", "last_item")

    def lose(self, conversation_id: str, how: str) -> None:
        """`conversation`: deleted (404 everywhere); `items`: its items answer 404 while the
        conversation itself still does (as reported on Azure after months); `last_item`: its
        last item is gone."""
        with self.lock:
            if conversation_id not in self.conversations:
                raise KeyError(conversation_id)
            if how == "conversation":
                del self.conversations[conversation_id]
                self.deleted_conversations.add(conversation_id)
            elif how == "items":
                self.lost_items.add(conversation_id)
            elif how == "last_item":
                self.conversations[conversation_id]["items"][-1:] = []
            else:
                raise ValueError(f"lose must be one of {', '.join(self.LOSSES)}, not {how!r}")

    def input_tokens(self, conversation_id: str, extra: list[JSON] | None = None) -> int:
        """A deterministic estimate (or the size the sandbox was told): 4 tokens a message,
        one per 4 characters of text, 85 per image, 3 to prime the answer."""
        with self.lock:
            if conversation_id in self.token_sizes:
                return self.token_sizes[conversation_id]
            items = list(self.conversations[conversation_id]["items"])
        return 3 + sum(item_tokens(item) for item in [*items, *(extra or [])])

    # --- introspection ------------------------------------------------------------------------
    def snapshot(self, include_items: bool = True) -> JSON:
        with self.lock:
            return {
                "conversations": {
                    cid: {
                        "metadata": conv["object"]["metadata"],
                        "item_count": len(conv["items"]),
                        **({"items": list(conv["items"])} if include_items else {}),
                    }
                    for cid, conv in self.conversations.items()
                },
                "deleted_conversations": sorted(self.deleted_conversations),
                "request_counts": dict(self.request_counts),
                "fault_counts": dict(self.fault_counts),
                "faults": asdict(self.faults),
                "threads": len(self.threads),
                "assistants": len(self.assistants),
                "turns_added": dict(self.turns_added),
                "missing_api_version": list(self.missing_api_version),
                "credentials_seen": dict(
                    Counter(kind for kind, _ in self.credentials_seen.elements())
                ),
            }

    def record(self, method: str, route: str, status: int, fault: str | None) -> None:
        with self.lock:
            self.request_counts[f"{method} {route}"] += 1
            if fault:
                self.fault_counts[fault] += 1
            self.requests_log.append((time.time(), method, route, status, fault))


def item_tokens(item: JSON) -> int:
    text = 0
    images = 0
    content = item.get("content")
    if isinstance(content, str):
        text += len(content)
    for part in content if isinstance(content, list) else []:
        if part.get("type") == "input_image":
            images += 1
        text += len(str(part.get("text") or ""))
    for key in ("arguments", "output", "name"):
        value = item.get(key)
        if isinstance(value, str):
            text += len(value)
    return 4 + -(-text // 4) + 85 * images

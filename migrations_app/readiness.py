"""Continuation readiness: can each migrated conversation really take its next turn?

Two things stop a migrated history at its first new turn:
- it is longer than the model's context leaves room for, and the Responses API's `truncation`
  defaults to `disabled`: the application must send `truncation="auto"`;
- the assistant's model has been (or will be) shut down.

The conversation's size is counted by the API itself (`POST /v1/responses/input_tokens`, with
the model the assistant's Responses configuration names and the conversation), once after it is
verified and again whenever the retention watchdog re-reads it; the context windows and shutdown
dates come from `data/models.toml` (kept in the project, with its sources and date).
"""

from __future__ import annotations

import functools
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from django.db.models import Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from migrations_app import openai_client
from migrations_app.conversion import responses_config
from migrations_app.models import Assistant, Conversation, ErrorKind, Thread, ThreadStatus

TABLE = Path(__file__).resolve().parent / "data" / "models.toml"
TRUNCATION_ADVICE = 'apps must send truncation="auto"'


@dataclass(frozen=True)
class ModelLimits:
    name: str
    context_window: int
    max_output_tokens: int
    shutdown: date | None = None

    @property
    def input_limit(self) -> int:
        """The most input tokens that still leave room for the model's longest answer."""
        return self.context_window - self.max_output_tokens


@dataclass(frozen=True)
class ModelTable:
    models: dict[str, ModelLimits]
    checked: date
    sources: list[str] = field(default_factory=list)

    def limits(self, model: str | None) -> ModelLimits | None:
        """The entry for `model`: its own, or its family's (the longest name it starts with,
        followed by a dash: gpt-4o-2024-08-06 → gpt-4o, gpt-4o-mini-2024-07-18 → gpt-4o-mini)."""
        if not model:
            return None
        if model in self.models:
            return self.models[model]
        families = [name for name in self.models if model.startswith(name + "-")]
        return self.models[max(families, key=len)] if families else None

    def shutdown(self, model: str | None) -> date | None:
        limits = self.limits(model)
        return limits.shutdown if limits else None


@functools.cache
def model_table(path: Path = TABLE) -> ModelTable:
    data = tomllib.loads(path.read_text())
    models = {
        name: ModelLimits(
            name=name,
            context_window=entry["context_window"],
            max_output_tokens=entry["max_output_tokens"],
            shutdown=entry.get("shutdown"),
        )
        for name, entry in data["models"].items()
    }
    return ModelTable(models=models, checked=data["checked"], sources=list(data["sources"]))


def model_of(assistant_data: dict[str, Any] | None) -> str:
    """The model a thread continues with: the one its assistant's Responses configuration
    names (conversion.responses_config)."""
    if not assistant_data:
        return ""
    config, _ = responses_config(assistant_data)
    return str(config.get("model") or "")


def retirement_phrase(model: str, shutdown: date, today: date | None = None) -> str:
    today = today or timezone.localdate()
    verb = "retired" if shutdown <= today else "retires"
    return f"the model {model} {verb} on {shutdown.isoformat()}"


def exceeds_phrase(tokens: int, limits: ModelLimits) -> str:
    return (
        f"exceeds the context: {tokens:,} input tokens, {limits.name} leaves room for "
        f"{limits.input_limit:,}: {TRUNCATION_ADVICE}"
    )


# --- which assistants (and so threads) a retiring model affects ----------------------------------
@dataclass(frozen=True)
class Retirement:
    shutdown: date
    models: list[str]
    assistant_pks: list[int]

    @property
    def key(self) -> str:
        return self.shutdown.isoformat()

    def phrase(self, today: date | None = None) -> str:
        today = today or timezone.localdate()
        verb = "retired" if self.shutdown <= today else "retire"
        if verb == "retire" and len(self.models) == 1:
            verb = "retires"
        models = ", ".join(self.models)
        noun = "Model" if len(self.models) == 1 else "Models"
        return f"{noun} {models} {verb} on {self.shutdown.isoformat()}"


def retirements() -> list[Retirement]:
    """Every shutdown date among the assistants' models, soonest first (the assistants table is
    small: a few hundred rows at most)."""
    table = model_table()
    by_date: dict[date, tuple[set[str], list[int]]] = {}
    for pk, data in Assistant.objects.values_list("pk", "data"):
        model = model_of(data)
        shutdown = table.shutdown(model)
        if shutdown is not None:
            models, pks = by_date.setdefault(shutdown, (set(), []))
            models.add(model)
            pks.append(pk)
    return [
        Retirement(day, sorted(models), sorted(pks))
        for day, (models, pks) in sorted(by_date.items())
    ]


def exceeding_threads() -> QuerySet[Thread]:
    """Threads whose live conversation was counted too long for its model."""
    exceeding = Conversation.objects.live().filter(exceeds_context=True).values("thread_id")
    return Thread.objects.filter(pk__in=exceeding)


def uncounted() -> QuerySet[Conversation]:
    """Verified live conversations of migrated threads not counted yet."""
    return Conversation.objects.live().filter(
        verified_at__isnull=False,
        tokens_counted_at=None,
        thread__status=ThreadStatus.SUCCEEDED,
    )


def uncounted_threads() -> QuerySet[Thread]:
    return Thread.objects.filter(pk__in=uncounted().values("thread_id"))


# --- counting ------------------------------------------------------------------------------------
@dataclass
class Count:
    counted: int = 0
    exceeding: int = 0
    failed: int = 0
    no_model: int = 0
    stopped: str = ""  # why the run stopped early (the API refused the key, say)


class Counter:
    """Counts conversations' tokens through the destination client, each request paced by the
    destination's shared budget (`ratelimit.shared(DESTINATION)`)."""

    def __init__(
        self,
        client: Any = None,
        limiter: Any = None,
        sleeper: Callable[[float], Any] = time.sleep,
    ) -> None:
        from migrations_app import ratelimit

        self.client = client or openai_client.destination_client()
        self.limiter = limiter or ratelimit.shared(ratelimit.DESTINATION)
        self.sleeper = sleeper

    def send(self, request: Callable[[], Any], attempts: int = 4) -> Any:
        """One request in the budget: a 429 pushes the shared budget back and is retried, a
        transient error is retried `attempts` times; anything else raises."""
        for attempt in range(attempts):
            wait = self.limiter.reserve()
            if wait > 0:
                self.sleeper(wait)
            try:
                return request()
            except Exception as error:
                failure = openai_client.classify(error)
                if failure.is_permanent or attempt == attempts - 1:
                    raise
                if failure.kind == ErrorKind.RATE_LIMITED:
                    self.limiter.slow_down(failure.retry_after or 2.0**attempt)
                else:
                    self.sleeper(min(30.0, 0.5 * 2**attempt))
        raise AssertionError("the last attempt returns or raises")

    def count(self, conversation: Conversation, model: str) -> None:
        """Count one conversation's tokens for `model` and store the result on it (or the
        API's reason for not counting it, so it is not asked again before the next re-read)."""
        table = model_table()
        try:
            tokens = self.send(
                lambda: openai_client.count_input_tokens(
                    self.client, model, conversation.conversation_id
                )
            )
        except Exception as error:
            failure = openai_client.classify(error)
            if failure.kind in (ErrorKind.AUTH, ErrorKind.RATE_LIMITED):
                raise
            Conversation.objects.filter(pk=conversation.pk).update(
                tokens_model=model,
                tokens_counted_at=Now(),
                tokens_error=failure.message[:2000],
            )
            raise CountFailed(failure.message) from None
        limits = table.limits(model)
        Conversation.objects.filter(pk=conversation.pk).update(
            input_tokens=tokens,
            tokens_model=model,
            tokens_counted_at=Now(),
            tokens_error="",
            exceeds_context=None if limits is None else tokens > limits.input_limit,
        )
        conversation.input_tokens = tokens
        conversation.exceeds_context = None if limits is None else tokens > limits.input_limit


class CountFailed(Exception):
    pass


def count_uncounted(
    limit: int = 500, *, deadline: float | None = None, counter: Counter | None = None
) -> Count:
    """Count the tokens of up to `limit` migrated conversations never counted, oldest first,
    until `deadline` (time.monotonic()). Threads without an assistant cannot be counted (no
    model): they are marked with that reason."""
    result = Count()
    pending = list(
        uncounted()
        .select_related("thread__assistant")
        .only("pk", "conversation_id", "thread__assistant__data")
        .order_by("verified_at")[:limit]
    )
    if not pending:
        return result
    counter = counter or Counter()
    for conversation in pending:
        if deadline is not None and time.monotonic() > deadline:
            break
        assistant = conversation.thread.assistant
        model = model_of(assistant.data if assistant else None)
        if not model:
            Conversation.objects.filter(pk=conversation.pk).update(
                tokens_counted_at=Now(),
                tokens_error="The thread has no assistant, so no model to count its tokens for.",
            )
            result.no_model += 1
            continue
        try:
            counter.count(conversation, model)
        except CountFailed:
            result.failed += 1
            continue
        except Exception as error:
            result.stopped = f"stopped: {openai_client.classify(error).message}"
            break
        result.counted += 1
        result.exceeding += bool(conversation.exceeds_context)
    return result


# --- the report (manage.py readiness) ------------------------------------------------------------
@dataclass
class ModelLine:
    model: str
    threads: int
    counted: int
    exceeding: int
    largest: int | None
    limits: ModelLimits | None


def report_lines() -> list[ModelLine]:
    """Per model of the migrated threads: how many, counted, exceeding, the largest count. One
    grouped query over the live verified conversations (for a command, not a page)."""
    from django.db.models import Count as Counted
    from django.db.models import Max

    rows = (
        Conversation.objects.live()
        .filter(verified_at__isnull=False, thread__status=ThreadStatus.SUCCEEDED)
        .values_list("thread__assistant__model")
        .annotate(
            threads=Counted("pk"),
            counted=Counted("pk", filter=Q(input_tokens__isnull=False)),
            exceeding=Counted("pk", filter=Q(exceeds_context=True)),
            largest=Max("input_tokens"),
        )
        .order_by("-threads")
    )
    table = model_table()
    return [
        ModelLine(str(model or ""), threads, counted, exceeding, largest, table.limits(model))
        for model, threads, counted, exceeding, largest in rows
    ]


# --- what the dashboard shows -------------------------------------------------------------------
COUNTED_UP_TO = 10_000


@dataclass
class RetirementLine:
    retirement: Retirement
    threads: int  # migrated threads of its assistants, counted up to COUNTED_UP_TO + 1
    past: bool


@dataclass
class Figures:
    exceeding: int
    uncounted: int
    retirements: list[RetirementLine]
    checked: date


def figures(today: date | None = None) -> Figures:
    """Bounded counts (each stops at 10,001), read from partial indexes or the assistant index."""
    today = today or timezone.localdate()
    exceeding = Conversation.objects.live().filter(exceeds_context=True)
    lines = []
    for retirement in retirements():
        migrated = Thread.objects.filter(
            status=ThreadStatus.SUCCEEDED, assistant_id__in=retirement.assistant_pks
        )
        count = migrated.values("pk")[: COUNTED_UP_TO + 1].count()
        if count:
            lines.append(RetirementLine(retirement, count, retirement.shutdown <= today))
    # The partial index alone (no join to the thread's status): a dashboard figure at 10⁷.
    waiting = Conversation.objects.live().filter(verified_at__isnull=False, tokens_counted_at=None)
    return Figures(
        exceeding=exceeding.values("pk")[: COUNTED_UP_TO + 1].count(),
        uncounted=waiting.values("pk")[: COUNTED_UP_TO + 1].count(),
        retirements=lines,
        checked=model_table().checked,
    )

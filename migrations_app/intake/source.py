"""The live source: an Assistants-shaped API that still answers (the built-in sandbox counts as
one). Threads are fetched one at a time into the mirror; assistants are synced all at once."""

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DatabaseError
from django.db.models import F
from django.utils import timezone

from migrations_app import connections, states
from migrations_app.intake.mirror import (
    BundleRejected,
    conversion_options,
    prepare,
    store_prepared,
    upsert_assistants,
)
from migrations_app.models import Attempt, ErrorKind, ImportBatch, Thread
from migrations_app.paging import chunks, pk_pages

if TYPE_CHECKING:
    from migrations_app.openai_client import ApiFailure

KEPT = "Running now, or its upload started: the mirror is kept as it was uploaded."


def source_configured() -> bool:
    """Whether there is a source API to fetch threads from: the built-in sandbox (no key set),
    or an explicit ASSISTANTS_BASE_URL (with a key, or Entra ID on Azure). OpenAI's own
    Assistants API was shut down on 2026-08-26, so a key alone names no source; then threads
    come from export files."""
    return connections.source().is_sandbox or bool(settings.ASSISTANTS_BASE_URL)


def _failure(kind: str, message: str) -> "ApiFailure":
    from migrations_app.openai_client import ApiFailure

    return ApiFailure(kind=kind, message=message)


def _classified(error: Exception) -> "ApiFailure":
    from migrations_app import openai_client

    try:
        return openai_client.classify(error)
    except Exception:  # not an API error: the source answered with something unreadable
        return _failure(
            ErrorKind.INVALID,
            "The source answered with something that is not the Assistants API's JSON "
            f"({type(error).__name__}: {error})",
        )


@dataclass
class Fetched:
    failure: "ApiFailure | None" = None
    skipped: bool = False  # the thread moved on (running, upload started): mirror kept
    messages: int = 0
    warnings: int = 0
    notes: list[str] = field(default_factory=list)


def _fetch(thread: Thread, client: Any, lease_owner: str) -> Fetched:
    from migrations_app import openai_client  # the SDK takes a second to import; intake of
    # ids and exports never needs it

    client = client or openai_client.source_client()
    try:
        bundle = openai_client.fetch_thread_bundle(client, thread.thread_id)
    except Exception as error:
        return Fetched(failure=_classified(error))
    return store_fetched(thread, bundle, lease_owner=lease_owner)


def store_fetched(thread: Thread, bundle: Any, *, lease_owner: str = "") -> Fetched:
    """A bundle the source answered for `thread`, checked and stored into the mirror. A worker
    passes the lease it holds: its thread is written although it is running, and only while the
    lease is still its own (else `skipped`). Without a lease a running thread, or one whose
    upload started, keeps its mirror (`skipped`)."""
    try:
        prepared = prepare(bundle, conversion_options(), where="source")
    except BundleRejected as error:
        return Fetched(
            failure=_failure(
                ErrorKind.INVALID,
                f"The source returned thread data the console cannot migrate: {error}",
            )
        )
    if prepared.thread_id != thread.thread_id:
        return Fetched(
            failure=_failure(
                ErrorKind.INVALID,
                f"Asked for {thread.thread_id}, the source answered with {prepared.thread_id}",
            )
        )
    try:
        stored = store_prepared([prepared], lease_owner=lease_owner)
    except DatabaseError as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        return Fetched(
            failure=_failure(ErrorKind.INVALID, f"The database refused the thread ({reason})")
        )
    if stored.skipped:
        return Fetched(skipped=True)
    return Fetched(
        messages=len(prepared.messages), warnings=prepared.warning_count, notes=prepared.notes
    )


def fetch_for_staff(
    thread_id: str, *, client: Any = None, actor: Any = None, actor_label: str = "worker"
) -> Attempt | None:
    """The fetch staff asked for (an action, an import): one thread into the mirror, recorded as
    an Attempt (returned; None if the id is unknown). A failure (404 included) marks a thread
    not mirrored yet failed, unless it moved on meanwhile; a thread already mirrored keeps its
    mirror and its state, the failure in its history row. It does not raise. A thread the fetch
    no longer applies to (running, or its upload started: `states.ELIGIBLE`) is skipped."""
    thread = Thread.objects.filter(thread_id=thread_id).first()
    if thread is None:
        return None
    attempt = Attempt(
        thread=thread, action=Attempt.Action.FETCH, actor=actor, actor_label=actor_label
    )
    if "fetch" not in states.applicable_actions(thread.pk):
        fetched = Fetched(skipped=True)
    else:
        fetched = _fetch(thread, client, "")
    if fetched.failure:
        failure = dataclasses.replace(
            fetched.failure, message=f"Fetching from the source failed: {fetched.failure.message}"
        )
        attempt.outcome = Attempt.Outcome.FAILED
        attempt.error_kind = failure.kind
        attempt.error_message = failure.message[: states.ERROR_MESSAGE_LIMIT]
        attempt.http_status = failure.http_status
        attempt.request_id = failure.request_id
        if not states.fetch_failed(thread.pk, failure):
            attempt.detail = {"kept": _kept_after_failure(thread)}
    elif fetched.skipped:
        attempt.outcome = Attempt.Outcome.SKIPPED
        attempt.error_message = KEPT
    else:
        attempt.outcome = Attempt.Outcome.SUCCEEDED
        attempt.detail = {"messages": fetched.messages, "warnings": fetched.warnings}
        if fetched.notes:
            attempt.detail["changed"] = fetched.notes
    attempt.finished_at = timezone.now()
    attempt.save()
    Thread.objects.filter(pk=thread.pk, fetch_task__isnull=False).update(fetch_task=None)
    return attempt


def _kept_after_failure(thread: Thread) -> str:
    """Why a failed fetch left the thread as it was, for its history row."""
    if thread.data is not None:
        return (
            "nothing changed: the thread was mirrored already, so it keeps its mirror and its "
            f"state ({thread.get_status_display().lower()})"
        )
    return (
        "nothing changed: the thread moved on (queued, running, uploading or mirrored by an "
        "export) while it was fetched, and keeps its state"
    )


FETCH_TASK = "migrations_app.tasks.fetch_from_source"


def queue_fetches(thread_ids: Iterable[str], group: str) -> int:
    """One task per thread: a fetch is a handful of reads, and per-thread tasks keep a slow
    thread from holding up others in its group. Returns how many were queued."""
    from django.db.models import Case, Value, When
    from django_q.tasks import async_task

    broker = states.recording_broker()
    options = {"broker": broker} if broker else {}
    rows: dict[str, int] = {}
    count = 0
    for thread_id in thread_ids:
        async_task(FETCH_TASK, thread_id, group=group, **states.PER_THREAD_TASK, **options)
        count += 1
        if broker is not None:
            rows[thread_id] = broker.last_row
    if rows:  # each thread names its fetch's task, until the fetch says how it went
        Thread.objects.filter(thread_id__in=list(rows)).update(
            fetch_task=Case(*(When(thread_id=tid, then=Value(row)) for tid, row in rows.items()))
        )
    return count


def fetch_stopped(thread_id: str, reason: str, *, actor_label: str = "sweeper") -> bool:
    """A staff fetch that ended without saying how (its task raised, timed out, or its worker
    died): recorded as failed in the thread's history, and a thread not mirrored yet fails with
    the reason (one mirrored keeps its mirror and state), so its batch stops waiting for it.
    Returns whether the thread was known."""
    from migrations_app.openai_client import ApiFailure

    thread = Thread.objects.filter(thread_id=thread_id).first()
    if thread is None:
        return False
    failure = ApiFailure(ErrorKind.TRANSIENT, f"The fetch stopped without an answer: {reason}")
    attempt = Attempt(
        thread=thread,
        action=Attempt.Action.FETCH,
        actor_label=actor_label,
        outcome=Attempt.Outcome.FAILED,
        error_kind=failure.kind,
        error_message=failure.message[: states.ERROR_MESSAGE_LIMIT],
        finished_at=timezone.now(),
    )
    if not states.fetch_failed(thread.pk, failure):
        attempt.detail = {"kept": _kept_after_failure(thread)}
    attempt.save()
    Thread.objects.filter(pk=thread.pk).update(fetch_task=None)
    return True


def sweep_stopped_fetches(limit: int = 2000) -> int:
    """Staff fetches whose task is gone without the fetch saying how it went: each recorded
    failed (see fetch_stopped). Returns how many."""
    from django.db.models import Exists, OuterRef
    from django_q.models import OrmQ

    task = OrmQ.objects.filter(pk=OuterRef("fetch_task"))
    stopped = Thread.objects.filter(~Exists(task), fetch_task__isnull=False)
    ids = list(stopped.values_list("thread_id", flat=True)[:limit])
    reason = (
        "its task ended (timed out after Q_TIMEOUT, or its worker was killed) before it could "
        "record anything; fetch it again"
    )
    return sum(fetch_stopped(thread_id, reason) for thread_id in ids)


def queue_batch_fetch(batch: ImportBatch) -> int:
    """Queue one fetch task for each of the batch's threads not mirrored yet (and not running or
    uploading); recorded on the batch. Returns how many were queued."""
    waiting = batch.threads.filter(states.ELIGIBLE["fetch"], fetched_at__isnull=True)
    count = 0
    for page in pk_pages(waiting, "thread_id"):
        count += queue_fetches([thread_id for _, thread_id in page], f"fetch batch {batch.pk}")
    ImportBatch.objects.filter(pk=batch.pk).update(fetch_queued=F("fetch_queued") + count)
    batch.fetch_queued += count
    return count


@dataclass
class Synced:
    stored: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (assistant id, why)
    failure: "ApiFailure | None" = None  # the API error that stopped it


def sync_assistants(client: Any = None) -> Synced:
    """Copy every assistant from the source (update, never duplicate); invalid ones are left out
    and returned with the reason. An API error stops it and is returned as its `failure` (the
    assistants stored before it stay); any other exception is raised."""
    from migrations_app import openai_client

    client = client or openai_client.source_client()
    result = Synced()
    try:
        for chunk in chunks(openai_client.list_assistants(client), 100):
            result.stored += upsert_assistants(chunk, rejected=result.rejected)
    except Exception as error:
        result.failure = openai_client.classify(error)  # raises what is not an API error
    return result

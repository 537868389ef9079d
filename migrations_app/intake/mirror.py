"""Storing into the mirror: thread bundles (from an export or the source API) and assistants.

A bundle is checked (validation.py), made storable (NUL characters replaced, see below) and
converted once, so the thread's warnings and item count are known before any migration, then
stored whole or not at all. Mirror fields change only inside a transaction, only for threads
`states.lock_writable_mirrors` hands back locked: a thread a worker is running, or whose upload
started, keeps its mirror (the conversation was built from it) and is reported as skipped.

A bundle from an export file also marks what the exports hold of the thread (`export_state`,
for coverage.py) and keeps what the export said beyond the API's objects (`export_info`: its
exporter's errors, warnings of the thread, and its files). An export with errors never replaces
a mirror that has none (fetched from the source, or exported whole): the thread keeps what it
has, and the batch says so.

NUL characters: PostgreSQL's jsonb cannot store U+0000. Intake replaces each with U+FFFD (�) and
says so in the batch's warnings (or the fetch's history row) rather than refusing the thread:
the rest of its text still migrates, and the replacement is visible.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from migrations_app import bulk, states
from migrations_app.conversion import Options, convert_thread
from migrations_app.intake.validation import check_assistant, check_bundle
from migrations_app.models import (
    Assistant,
    ExportState,
    ImportBatch,
    Message,
    RunStep,
    Thread,
)

log = logging.getLogger(__name__)
NUL = "\x00"
NUL_ESCAPED = "\\u0000"  # how orjson writes U+0000 in JSON text
REPLACEMENT = "\ufffd"


class BundleRejected(ValueError):
    """A bundle intake will not store; the message says why, in words for the batch report."""


@dataclass(slots=True)
class Prepared:
    """A checked bundle, as the rows it becomes. JSON is kept as text: it goes to the database
    as is (COPY), and the parsed objects can be freed while the chunk waits."""

    thread_id: str
    thread_text: str
    created_at: datetime | None
    messages: list[tuple[str, int, str, int, str]]  # id, position, role, created_at, JSON
    steps: list[tuple[str, str, int, str]]  # id, run id, created_at, JSON
    assistant_id: str | None
    warning_count: int
    items_total: int
    notes: list[str] = field(default_factory=list)  # what was changed on the way in
    where: str = ""  # the file (or "source") it came from, for the report
    line: int | None = None
    export_info: str | None = None  # JSON text (Thread.export_info)
    export_state: str = ExportState.NONE  # what an export file holds of it; "" when fetched
    export_errors: int = 0  # the exporter's errors about it


@dataclass
class Stored:
    """What storing did, by thread id."""

    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # running, or upload started
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (thread id, why)
    # Bundles with exporter errors that left a mirror without any as it was.
    kept_whole: list[str] = field(default_factory=list)

    def add(self, other: "Stored") -> None:
        self.new += other.new
        self.updated += other.updated
        self.skipped += other.skipped
        self.rejected += other.rejected
        self.kept_whole += other.kept_whole


# --- making a bundle storable -------------------------------------------------------------------
def _without_nul(value: Any) -> tuple[Any, int]:
    """`value` with every NUL in its strings and keys replaced, and how many were."""
    if isinstance(value, str):
        count = value.count(NUL)
        return (value.replace(NUL, REPLACEMENT), count) if count else (value, 0)
    if isinstance(value, list):
        total, items = 0, []
        for item in value:
            cleaned, count = _without_nul(item)
            items.append(cleaned)
            total += count
        return items, total
    if isinstance(value, dict):
        total, entries = 0, {}
        for key, item in value.items():
            cleaned_key, key_count = _without_nul(key)
            cleaned, count = _without_nul(item)
            entries[cleaned_key] = cleaned
            total += key_count + count
        return entries, total
    return value, 0


def _storable(obj: Any, what: str, notes: list[str]) -> tuple[Any, str]:
    """(object, its JSON text) as the database can store it."""
    try:
        text = orjson.dumps(obj).decode()
    except orjson.JSONEncodeError as error:
        raise BundleRejected(f"{what} cannot be stored: {error}") from None
    if NUL_ESCAPED in text:  # rare: only then walk the object
        obj, count = _without_nul(obj)
        if count:
            notes.append(
                f"{what}: {count} NUL character(s) replaced with U+FFFD "
                "(the database cannot store U+0000)"
            )
            text = orjson.dumps(obj).decode()
    return obj, text


def _timestamp(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value is not None else None


def _assistant_id_of(bundle: dict) -> str | None:
    for source in (bundle.get("runs") or [], bundle["messages"]):
        for obj in source:
            if obj.get("assistant_id"):
                return obj["assistant_id"]
    return None


def prepare(
    bundle: Any,
    options: Options,
    *,
    where: str = "",
    line: int | None = None,
    from_export: bool = False,
) -> Prepared:
    """A bundle checked, made storable and converted once. Raises BundleRejected.
    `from_export`: it came from an export file (its export_state is set when stored)."""
    if problem := check_bundle(bundle):
        raise BundleRejected(problem)
    thread_id = bundle["thread"]["id"]
    notes: list[str] = []
    thread, thread_text = _storable(bundle["thread"], "thread object", notes)
    messages, message_rows = [], []
    for position, message in enumerate(bundle["messages"]):
        message, text = _storable(message, f"message {message['id']}", notes)
        messages.append(message)
        message_rows.append((message["id"], position, message["role"], message["created_at"], text))
    steps, step_rows = [], []
    for step in bundle.get("run_steps") or ():
        if step.get("type") != "tool_calls":
            continue  # message_creation steps: the messages themselves say it all
        step, text = _storable(step, f"run step {step['id']}", notes)
        steps.append(step)
        step_rows.append((step["id"], step["run_id"], step["created_at"], text))
    export = bundle.get("export") or None
    export_errors = (export or {}).get("errors") or []
    export_text = None
    if export:
        export, export_text = _storable(export, "the export's notes", notes)
    try:
        conversion = convert_thread(thread, messages, steps, options, export_errors=export_errors)
    except Exception as error:  # a gap in validation.py: refuse rather than store a time bomb
        log.exception("%s passed the checks but does not convert", thread_id)
        raise BundleRejected(f"cannot be converted ({type(error).__name__}: {error})") from None
    return Prepared(
        thread_id=thread_id,
        thread_text=thread_text,
        created_at=_timestamp(thread.get("created_at")),
        messages=message_rows,
        steps=step_rows,
        assistant_id=_assistant_id_of(bundle),
        warning_count=len(conversion.warnings),
        items_total=len(conversion.items),
        notes=notes,
        where=where,
        line=line,
        export_info=export_text,
        export_state=(
            (ExportState.ERRORS if export_errors else ExportState.WHOLE)
            if from_export
            else ExportState.NONE
        ),
        export_errors=len(export_errors),
    )


def conversion_options() -> Options:
    from migrations_app.preview import conversion_options as current

    return current()


# --- storing ------------------------------------------------------------------------------------
def store_bundles(
    bundles: Iterable[Any], *, batch: ImportBatch | None = None, lease_owner: str = ""
) -> Stored:
    """Check and store thread bundles (the last one wins if a thread id repeats). Invalid ones
    are returned as rejected, the others stored each whole or not at all."""
    options = conversion_options()
    result = Stored()
    prepared: dict[str, Prepared] = {}
    for bundle in bundles:
        try:
            ready = prepare(bundle, options)
        except BundleRejected as error:
            result.rejected.append((_thread_id_of(bundle), str(error)))
            continue
        prepared[ready.thread_id] = ready
    result.add(store_prepared(list(prepared.values()), batch=batch, lease_owner=lease_owner))
    return result


def _thread_id_of(bundle: Any) -> str:
    thread = bundle.get("thread") if isinstance(bundle, dict) else None
    thread_id = thread.get("id") if isinstance(thread, dict) else None
    return thread_id[:80] if isinstance(thread_id, str) else "?"


# A mirror without exporter errors: fetched from the source, or exported whole.
WHOLE_MIRROR = Q(data__isnull=False) & (
    Q(export_info__isnull=True) | ~Q(export_info__has_key="errors")
)
# Export states a bundle raises a thread to (the best export wins: see ExportState).
RAISES = {
    ExportState.WHOLE: [ExportState.NONE, ExportState.UNREAD, ExportState.ERRORS],
    ExportState.ERRORS: [ExportState.NONE, ExportState.UNREAD],
}


def store_prepared(
    prepared: list[Prepared], *, batch: ImportBatch | None = None, lease_owner: str = ""
) -> Stored:
    """Store checked bundles (distinct thread ids) in one transaction: new threads inserted with
    their mirror, the others' mirrors replaced where `states.lock_writable_mirrors` allows and
    where no mirror without exporter errors would give way to one with them."""
    if not prepared:
        return Stored()
    prepared = sorted(prepared, key=lambda p: p.thread_id)  # one lock order for every writer
    now = timezone.now()
    wanted = {p.assistant_id for p in prepared} - {None}
    assistants = dict(
        Assistant.objects.filter(assistant_id__in=wanted).values_list("assistant_id", "pk")
    )

    def mirror(p: Prepared) -> tuple[Any, ...]:
        assistant_pk = assistants.get(p.assistant_id) if p.assistant_id else None
        return (
            p.thread_text,
            p.created_at,
            len(p.messages),
            assistant_pk,
            p.warning_count,
            p.items_total,
            p.export_info,
        )

    with transaction.atomic():
        inserted = bulk.insert_mirror_rows(
            Thread,
            [(p.thread_id, *mirror(p), p.export_state) for p in prepared],
            batch.pk if batch else None,
            now,
        )
        rest = [p for p in prepared if p.thread_id not in inserted]
        existing = (
            {
                thread_id: (pk, import_batch_id)
                for thread_id, pk, import_batch_id in Thread.objects.filter(
                    thread_id__in=[p.thread_id for p in rest]
                ).values_list("thread_id", "pk", "import_batch_id")
            }
            if rest
            else {}
        )
        pk_of = {thread_id: pk for thread_id, (pk, _) in existing.items()}
        writable = set(states.lock_writable_mirrors(pk_of.values(), lease_owner))
        with_errors = [pk_of[p.thread_id] for p in rest if p.export_errors and p.thread_id in pk_of]
        whole = (
            set(
                Thread.objects.filter(WHOLE_MIRROR, pk__in=with_errors).values_list("pk", flat=True)
            )
            if with_errors
            else set()
        )
        updated = [
            p
            for p in rest
            if pk_of.get(p.thread_id) in writable - (whole if p.export_errors else set())
        ]
        if updated:
            pks = [pk_of[p.thread_id] for p in updated]
            _keep_files(updated, pk_of)
            bulk.update_mirror_rows(
                Thread, [(pk_of[p.thread_id], *mirror(p)) for p in updated], now
            )
            Message.objects.filter(thread_id__in=pks).delete()
            RunStep.objects.filter(thread_id__in=pks).delete()
        written = [(inserted[p.thread_id], p) for p in prepared if p.thread_id in inserted]
        written += [(pk_of[p.thread_id], p) for p in updated]
        bulk.copy_rows(
            Message,
            ["thread_id", "message_id", "position", "role", "created_at", "data"],
            ((pk, *row) for pk, p in written for row in p.messages),
        )
        bulk.copy_rows(
            RunStep,
            ["thread_id", "step_id", "run_id", "created_at", "data"],
            ((pk, *row) for pk, p in written for row in p.steps),
        )
        if updated:
            states.found_again(pks)
        _mark_exported(rest, pk_of)
        if batch is not None:
            bulk.add_members(
                batch.pk, [pk for pk, import_batch in existing.values() if import_batch != batch.pk]
            )
    updated_ids = {p.thread_id for p in updated}
    return Stored(
        new=[p.thread_id for p in prepared if p.thread_id in inserted],
        updated=[p.thread_id for p in updated],
        skipped=[p.thread_id for p in rest if pk_of.get(p.thread_id) not in writable],
        kept_whole=[
            p.thread_id
            for p in rest
            if pk_of.get(p.thread_id) in writable and p.thread_id not in updated_ids
        ],
    )


def _keep_files(updated: list[Prepared], pk_of: dict[str, int]) -> None:
    """A new mirror that says nothing of the thread's files (a fetch, our own layout) keeps the
    files' metadata an export gave before: staff need it to bind the files again, and no API
    lists it any more. The exporter's errors go (they were about the mirror replaced)."""
    bare = {pk_of[p.thread_id]: p for p in updated if p.export_info is None}
    if not bare:
        return
    earlier = Thread.objects.filter(pk__in=list(bare), export_info__has_key="files")
    for pk, earlier_info in earlier.values_list("pk", "export_info"):
        info = earlier_info or {}
        source = info.get("files_from") or (
            f"the {info.get('layout') or 'earlier'} export of {info.get('exported_at') or '?'}"
        )
        bare[pk].export_info = orjson.dumps({"files": info["files"], "files_from": source}).decode()


def _mark_exported(prepared: list[Prepared], pk_of: dict[str, int]) -> None:
    """Threads an export file holds are marked so, whatever became of their mirror (the best
    export wins: whole, then with errors, then unread)."""
    for state, lower in RAISES.items():
        pks = [
            pk_of[p.thread_id] for p in prepared if p.export_state == state and p.thread_id in pk_of
        ]
        if pks:
            Thread.objects.filter(pk__in=pks, export_state__in=lower).update(export_state=state)


# --- assistants ---------------------------------------------------------------------------------
def upsert_assistants(
    assistants: Iterable[Any], *, rejected: list[tuple[str, str]] | None = None
) -> int:
    """Insert or update assistants (never duplicated); returns how many were stored. Invalid ones
    are left out, each added to `rejected` as (id, why) when given. Threads loaded before their
    assistant get the link now."""
    now = timezone.now()
    rows = []
    for assistant in assistants:
        if not (problem := check_assistant(assistant)):
            try:
                assistant, _ = _storable(assistant, assistant["id"], [])
            except BundleRejected as error:
                problem = str(error)
        if problem:
            if rejected is not None:
                shown = assistant.get("id") if isinstance(assistant, dict) else None
                rejected.append((shown if isinstance(shown, str) else "?", problem))
            continue
        rows.append(
            Assistant(
                assistant_id=assistant["id"],
                name=(assistant.get("name") or "")[:256],
                model=(assistant.get("model") or "")[:128],
                data=assistant,
                created_at=_timestamp(assistant.get("created_at")),
                synced_at=now,
            )
        )
    Assistant.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["assistant_id"],
        update_fields=["name", "model", "data", "created_at", "synced_at"],
    )
    link_threads_to_assistants([a.assistant_id for a in rows])
    return len(rows)


def link_threads_to_assistants(assistant_ids: list[str]) -> int:
    """Threads mirrored before their assistant was synced get the link now (where their mirror
    may still change). Returns how many were linked."""
    if not assistant_ids:
        return 0
    found = (
        Message.objects.filter(thread__assistant__isnull=True, data__assistant_id__in=assistant_ids)
        .values_list("thread_id", "data__assistant_id")
        .distinct()
    )
    by_thread = dict(found)
    if not by_thread:
        return 0
    pks = dict(
        Assistant.objects.filter(assistant_id__in=assistant_ids).values_list("assistant_id", "pk")
    )
    linked = 0
    with transaction.atomic():
        groups: dict[str, list[int]] = {}
        for thread_pk in states.lock_writable_mirrors(by_thread):
            groups.setdefault(by_thread[thread_pk], []).append(thread_pk)
        for assistant_id, thread_pks in groups.items():
            linked += Thread.objects.filter(pk__in=thread_pks, assistant__isnull=True).update(
                assistant=pks[assistant_id]
            )
    return linked

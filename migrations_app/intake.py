"""Intake: fill the mirror from thread-id lists, the live source API, or export files.

Plain functions over ids and files; the commands, tasks and admin pages call these.
"""

import csv
import gc
import io
import re
import zipfile
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import orjson
from django.db import transaction
from django.utils import timezone

from migrations_app import bulk
from migrations_app.models import (
    Assistant,
    Attempt,
    Conversation,
    ErrorKind,
    ImportBatch,
    Message,
    RunStep,
    Thread,
    ThreadStatus,
)

THREAD_ID = re.compile(r"^thread_[A-Za-z0-9_-]{1,57}$")
ID_CHUNK = 5000
BUNDLE_CHUNK = 500


class IntakeError(Exception):
    """Input that cannot be read at all (the whole file, not one line of it)."""


# --- thread ids ---------------------------------------------------------------------------------
def _rows(lines):
    """(line number, thread id text) from a CSV with a thread_id column or one id per line."""
    lines = iter(lines)
    first = next((line for line in lines), "")
    header = next(csv.reader([first]), [])
    cleaned = [column.strip().lower().lstrip("\ufeff") for column in header]
    if "thread_id" not in cleaned:
        if len(cleaned) > 1:
            raise IntakeError(
                f"The CSV header has no thread_id column (found: {', '.join(cleaned)})."
            )
        yield 1, first.strip().lstrip("\ufeff")
        for number, line in enumerate(lines, start=2):
            yield number, line.strip()
        return
    column, width = cleaned.index("thread_id"), len(cleaned)
    for number, line in enumerate(lines, start=2):
        if not line.strip():
            yield number, ""
            continue
        if width == 1 and '"' not in line and "," not in line:
            yield number, line.strip()  # the common case, without the csv module's cost
            continue
        try:
            fields = next(csv.reader([line], strict=True))
        except csv.Error as error:
            yield number, ValueError(f"malformed CSV ({error})")
            continue
        if len(fields) != width:
            yield number, ValueError(f"expected {width} fields, found {len(fields)}")
            continue
        yield number, fields[column].strip()


def parse_thread_ids(lines, batch):
    """Valid ids in file order; invalid lines are recorded on the batch with their number."""
    for number, value in _rows(lines):
        if isinstance(value, ValueError):
            batch.add_error(f"Line {number}: {value}", line=number)
        elif not value:
            continue
        elif not THREAD_ID.match(value):
            shown = value if len(value) <= 80 else value[:77] + "…"
            batch.add_error(
                f"Line {number}: {shown!r} is not a thread id (expected thread_…)", line=number
            )
        else:
            yield value


def _chunks(iterable, size):
    iterator = iter(iterable)
    while chunk := list(islice(iterator, size)):
        yield chunk


def import_thread_ids(lines, *, batch):
    """Register thread ids from CSV/plain lines. All or nothing: a crash inserts no thread."""
    batch.status = ImportBatch.Status.RUNNING
    batch.save()
    try:
        with transaction.atomic():
            for chunk in _chunks(parse_thread_ids(lines, batch), ID_CHUNK):
                new = bulk.insert_new_thread_ids(Thread, dict.fromkeys(chunk), batch.pk)
                batch.new_count += new
                batch.duplicate_count += len(chunk) - new
    except IntakeError as error:
        fail_batch(batch, str(error))
        raise
    except Exception as error:
        fail_batch(batch, f"Import stopped, nothing was imported: {error}")
        raise
    batch.status = ImportBatch.Status.DONE
    batch.finished_at = timezone.now()
    batch.save()
    return batch


def fail_batch(batch, message):
    batch.new_count = batch.duplicate_count = 0
    batch.status = ImportBatch.Status.FAILED
    batch.finished_at = timezone.now()
    batch.errors.insert(0, {"file": batch.filename, "line": None, "message": message})
    batch.save()


def import_thread_id_file(path, *, user=None):
    batch = ImportBatch(source=ImportBatch.Source.CSV, filename=Path(path).name, created_by=user)
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return import_thread_ids(handle, batch=batch)


# --- storing bundles ----------------------------------------------------------------------------
def _timestamp(value):
    return datetime.fromtimestamp(value, tz=UTC) if isinstance(value, int | float) else None


def _assistant_id_of(bundle):
    for source in (bundle.get("runs") or [], bundle.get("messages") or []):
        for obj in source:
            if obj.get("assistant_id"):
                return obj["assistant_id"]
    return None


def is_frozen(thread):
    """A thread whose upload has started keeps its mirror: a retry must reuse the same input."""
    return thread.items_committed > 0


def store_bundles(bundles, *, batch=None):
    """Write thread bundles into the mirror; returns (new, updated, skipped) counts.

    Fetching again replaces a thread's messages and steps, never duplicating them; threads whose
    upload has begun are skipped (their mirror is what the conversation was built from).
    """
    bundles = list({b["thread"]["id"]: b for b in bundles}.values())
    ids = [b["thread"]["id"] for b in bundles]
    now = timezone.now()
    with transaction.atomic():
        existing = {t.thread_id: t for t in Thread.objects.filter(thread_id__in=ids)}
        frozen = set(
            Conversation.objects.live()
            .filter(thread__thread_id__in=ids)
            .values_list("thread__thread_id", flat=True)
        )
        frozen |= {tid for tid, t in existing.items() if is_frozen(t)}
        writable = [b for b in bundles if b["thread"]["id"] not in frozen]
        assistant_pks = dict(
            Assistant.objects.filter(
                assistant_id__in={_assistant_id_of(b) for b in writable} - {None}
            ).values_list("assistant_id", "pk")
        )
        rows = []
        for bundle in writable:
            thread = existing.get(bundle["thread"]["id"]) or Thread(
                thread_id=bundle["thread"]["id"], import_batch=batch
            )
            thread.data = bundle["thread"]
            thread.created_at = _timestamp(bundle["thread"].get("created_at"))
            thread.fetched_at = now
            thread.updated_at = now
            thread.message_count = len(bundle.get("messages") or [])
            thread.assistant_id = assistant_pks.get(_assistant_id_of(bundle))
            if thread.status == ThreadStatus.FAILED and thread.error_kind == ErrorKind.NOT_FOUND:
                thread.status = ThreadStatus.PENDING
                thread.clear_error()
            rows.append(thread)
        Thread.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["thread_id"],
            update_fields=[
                "data",
                "created_at",
                "fetched_at",
                "updated_at",
                "message_count",
                "assistant",
                "status",
                "error_kind",
                "error_message",
                "error_http_status",
                "error_request_id",
            ],
        )
        pks = dict(
            Thread.objects.filter(thread_id__in=[t.thread_id for t in rows]).values_list(
                "thread_id", "pk"
            )
        )
        Message.objects.filter(thread_id__in=pks.values()).delete()
        RunStep.objects.filter(thread_id__in=pks.values()).delete()
        bulk.copy_rows(
            Message,
            ["thread_id", "message_id", "position", "role", "created_at", "data"],
            (
                (
                    pks[b["thread"]["id"]],
                    m["id"],
                    position,
                    m.get("role", ""),
                    int(m.get("created_at") or 0),
                    _json_text(m),
                )
                for b in writable
                for position, m in enumerate(b.get("messages") or [])
            ),
        )
        bulk.copy_rows(
            RunStep,
            ["thread_id", "step_id", "run_id", "created_at", "data"],
            (
                (
                    pks[b["thread"]["id"]],
                    s["id"],
                    s.get("run_id", ""),
                    int(s.get("created_at") or 0),
                    _json_text(s),
                )
                for b in writable
                for s in b.get("run_steps") or []
                if s.get("type") == "tool_calls"
            ),
        )
    new = sum(1 for t in rows if t.thread_id not in existing)
    return new, len(rows) - new, len(bundles) - len(writable)


def upsert_assistants(assistants):
    rows = [
        Assistant(
            assistant_id=a["id"],
            name=(a.get("name") or "")[:256],
            model=(a.get("model") or "")[:128],
            data=a,
            created_at=_timestamp(a.get("created_at")),
            synced_at=timezone.now(),
        )
        for a in assistants
    ]
    Assistant.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["assistant_id"],
        update_fields=["name", "model", "data", "created_at", "synced_at"],
    )
    _link_threads_to_assistants([a.assistant_id for a in rows])
    return len(rows)


def _link_threads_to_assistants(assistant_ids):
    """Threads loaded before their assistant was synced get the link now."""
    for assistant in Assistant.objects.filter(assistant_id__in=assistant_ids):
        Thread.objects.filter(
            assistant__isnull=True, messages__data__assistant_id=assistant.assistant_id
        ).update(assistant=assistant)


# --- the live source ----------------------------------------------------------------------------
def fetch_into_mirror(thread, client=None, *, lease_owner=""):
    """Copy one thread from the source API into the mirror. Returns None, or the ApiFailure
    that stopped it (the mirror is then unchanged)."""
    from migrations_app import openai_client  # the SDK takes a second to import; intake of
    # ids and exports never needs it

    client = client or openai_client.source_client()
    try:
        bundle = openai_client.fetch_thread_bundle(client, thread.thread_id)
    except Exception as error:
        return openai_client.classify(error)
    store_bundles([bundle])
    return None


def fetch_thread(thread_id, *, client=None, actor=None, actor_label="worker"):
    """Fetch one thread for staff. A 404 marks the thread failed (not_found); it does not
    raise. Returns the Attempt recorded."""
    thread = Thread.objects.get(thread_id=thread_id)
    attempt = Attempt(
        thread=thread, action=Attempt.Action.FETCH, actor=actor, actor_label=actor_label
    )
    if is_frozen(thread) or thread.conversations.live().exists():
        attempt.outcome = Attempt.Outcome.SKIPPED
        attempt.error_message = "Upload already started; the mirror is kept as it was uploaded."
        attempt.finished_at = timezone.now()
        attempt.save()
        return attempt
    failure = fetch_into_mirror(thread, client)
    if failure:
        _record_fetch_failure(thread, attempt, failure)
        return attempt
    thread.refresh_from_db()
    attempt.outcome = Attempt.Outcome.SUCCEEDED
    attempt.finished_at = timezone.now()
    attempt.detail = {"messages": thread.message_count}
    attempt.save()
    return attempt


def _record_fetch_failure(thread, attempt, failure):
    with transaction.atomic():
        thread.status = ThreadStatus.FAILED
        thread.error_kind = failure.kind
        thread.error_message = f"Fetching from the source failed: {failure.message}"
        thread.error_http_status = failure.http_status
        thread.error_request_id = failure.request_id
        thread.save()
        attempt.outcome = Attempt.Outcome.FAILED
        attempt.error_kind = failure.kind
        attempt.error_message = thread.error_message
        attempt.http_status = failure.http_status
        attempt.request_id = failure.request_id
        attempt.finished_at = timezone.now()
        attempt.save()


def sync_assistants(client=None):
    from migrations_app import openai_client

    client = client or openai_client.source_client()
    total = 0
    for chunk in _chunks(openai_client.list_assistants(client), 100):
        total += upsert_assistants(chunk)
    return total


# --- export files -------------------------------------------------------------------------------
REQUIRED_MESSAGE_KEYS = ("id", "role", "content", "created_at")


def check_bundle(bundle):
    """The reason a parsed export object is not a thread bundle, or None."""
    if not isinstance(bundle, dict):
        return "expected a JSON object with a 'thread' key"
    thread = bundle.get("thread")
    if not isinstance(thread, dict) or not isinstance(thread.get("id"), str):
        return "missing 'thread' object with an 'id'"
    if not THREAD_ID.match(thread["id"]):
        return f"{thread['id'][:80]!r} is not a thread id (expected thread_…)"
    for key in ("messages", "runs", "run_steps"):
        if not isinstance(bundle.get(key, []), list):
            return f"'{key}' must be a list"
    for index, message in enumerate(bundle.get("messages") or []):
        if not isinstance(message, dict):
            return f"messages[{index}] is not an object"
        missing = [k for k in REQUIRED_MESSAGE_KEYS if k not in message]
        if missing:
            return f"messages[{index}] lacks {', '.join(missing)}"
        if message["role"] not in ("user", "assistant"):
            return f"messages[{index}] has role {message['role']!r} (expected user or assistant)"
        if not isinstance(message["content"], list):
            return f"messages[{index}].content must be a list"
    return None


def _json_text(obj):
    return orjson.dumps(obj).decode()


def _parse_json(text, where, line=None):
    # orjson: exports run to gigabytes, and the standard library parses them 5× slower.
    try:
        return orjson.loads(text), None
    except ValueError as error:
        return None, {"file": where, "line": line, "message": f"invalid JSON: {error}"}


def _from_jsonl(handle, where):
    for number, line in enumerate(handle, start=1):
        if line.strip():
            yield (where, number, *_parse_json(line, where, number))


def _bundle_name(name):
    return name.endswith(".json") and "threads/" in f"/{name}"


def _from_directory(root):
    assistants = root / "assistants.json"
    if assistants.exists():
        yield ("assistants.json", None, *_parse_json(assistants.read_text("utf-8"), "assistants"))
    for path in sorted((root / "threads").glob("*.json")):
        where = str(path.relative_to(root))
        yield (where, None, *_parse_json(path.read_text("utf-8"), where))
    for path in sorted(root.glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            yield from _from_jsonl(handle, path.name)


def _from_zip(path):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise IntakeError(
            f"{path.name} is not a readable zip file ({error}); is it truncated?"
        ) from None
    with archive:
        for info in archive.infolist():
            name = info.filename
            try:
                if name.rsplit("/", 1)[-1] == "assistants.json" or _bundle_name(name):
                    yield (name, None, *_parse_json(archive.read(info).decode("utf-8"), name))
                elif name.endswith(".jsonl"):
                    with archive.open(info) as raw:
                        yield from _from_jsonl(io.TextIOWrapper(raw, encoding="utf-8"), name)
            except (zipfile.BadZipFile, EOFError, OSError, UnicodeDecodeError) as error:
                yield (
                    name,
                    None,
                    None,
                    {"file": name, "line": None, "message": f"unreadable ({error})"},
                )


def read_export(path):
    """(where, line, parsed object or None, error or None) for every object in an export."""
    path = Path(path)
    if not path.exists():
        raise IntakeError(f"{path} does not exist")
    if path.is_dir():
        return _from_directory(path)
    if path.suffix == ".zip":
        return _from_zip(path)
    if path.suffix == ".jsonl":
        return _from_jsonl_file(path)
    raise IntakeError(f"{path.name}: expected a directory, a .jsonl file or a .zip file")


def _from_jsonl_file(path):
    with open(path, encoding="utf-8") as handle:
        yield from _from_jsonl(handle, path.name)


def load_export(path, *, user=None, progress=None, batch=None):
    """Load an export into the mirror, streaming: memory stays flat whatever the export's size.
    Invalid objects are reported by file and line; valid ones still load."""
    batch = batch or ImportBatch(
        source=ImportBatch.Source.EXPORT, filename=Path(path).name, created_by=user
    )
    batch.status = ImportBatch.Status.RUNNING
    batch.save()
    try:
        with _paused_cyclic_gc():
            _load_objects(read_export(path), batch, progress)
    except IntakeError as error:
        _finish(batch, ImportBatch.Status.FAILED, str(error))
        raise
    _finish(batch, ImportBatch.Status.DONE)
    return batch


@contextmanager
def _paused_cyclic_gc():
    """Parsed JSON holds no reference cycles, but millions of fresh containers make the cyclic
    collector run again and again over the whole heap: half the parse time. Reference counting
    still frees every chunk."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_objects(objects, batch, progress):
    pending = []
    for where, line, parsed, error in objects:
        if error:
            batch.add_error(error["message"], file=error["file"], line=error["line"])
        elif where.rsplit("/", 1)[-1] == "assistants.json":
            _load_assistants(parsed, batch, where)
        elif problem := check_bundle(parsed):
            batch.add_error(problem, file=where, line=line)
        else:
            pending.append(parsed)
            if len(pending) >= BUNDLE_CHUNK:
                _store_chunk(pending, batch, progress)
    if pending:
        _store_chunk(pending, batch, progress)


def _load_assistants(parsed, batch, where):
    if not isinstance(parsed, list) or not all(
        isinstance(a, dict) and isinstance(a.get("id"), str) for a in parsed
    ):
        batch.add_error("expected a list of Assistant objects", file=where)
        return
    upsert_assistants(parsed)


def _store_chunk(pending, batch, progress):
    new, updated, skipped = store_bundles(pending, batch=batch)
    batch.new_count += new
    batch.duplicate_count += updated
    batch.skipped_count += skipped
    pending.clear()
    batch.save(
        update_fields=["new_count", "duplicate_count", "skipped_count", "errors", "invalid_count"]
    )
    if progress:
        progress(batch)


def _finish(batch, status, message=None):
    if message:
        batch.errors.insert(0, {"file": batch.filename, "line": None, "message": message})
    batch.status = status
    batch.finished_at = timezone.now()
    batch.save()


# --- the mapping --------------------------------------------------------------------------------
MAPPING_HEADER = ["thread_id", "conversation_id", "status", "items", "warnings"]


def mapping_rows(threads):
    """CSV rows of the thread → conversation mapping, streamed from the database."""
    rows = threads.order_by("pk").values_list(
        "thread_id", "conversation_id", "status", "items_committed", "warning_count"
    )
    yield MAPPING_HEADER
    for thread_id, conversation_id, status, items, warnings in rows.iterator(chunk_size=5000):
        yield [thread_id, conversation_id or "", status, items, warnings]


def write_mapping(out, threads=None):
    writer = csv.writer(out, lineterminator="\n")
    count = -1
    for row in mapping_rows(threads if threads is not None else Thread.objects.all()):
        writer.writerow(row)
        count += 1
    return count

"""Uploaded id lists and exports: their size limits, their place in the default storage, and the
import that removes them afterwards whatever happens.

Uploads go through Django's storage API (`default_storage`), never a path on the web server's
disk, so the worker that imports one may run on another machine: a folder every machine mounts
(UPLOAD_DIR), or S3 through django-storages. The worker opens the file through the same API.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.utils import timezone

from migrations_app.intake.batches import IntakeError, human_size, running
from migrations_app.intake.exports import load_export_file
from migrations_app.intake.ids import import_thread_ids, utf8_lines
from migrations_app.intake.source import queue_batch_fetch, source_configured
from migrations_app.models import ImportBatch

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.core.files.uploadedfile import UploadedFile
    from django.http import HttpRequest

log = logging.getLogger(__name__)
FOLDER = "imports"
IDS, EXPORT = "ids", "export"
INLINE_IMPORT_LIMIT = 1_000_000  # bytes; larger uploads are imported by a worker
INLINE_FETCH_IMPORT_LIMIT = 64_000  # bytes of ids imported (and their fetches queued) inline


def size_limit(kind: str) -> int:
    if kind == IDS:
        return settings.IMPORT_MAX_ID_LIST_BYTES
    return settings.IMPORT_MAX_EXPORT_BYTES


def size_problem(kind: str, name: str, size: int | None) -> str | None:
    """Why an upload of `size` bytes (None: more than the limit) is refused before anything
    reads it, or None."""
    limit = size_limit(kind)
    if size is not None and size <= limit:
        return None
    if kind == IDS:
        what, setting, advice = (
            "an id list",
            "IMPORT_MAX_ID_LIST_MB",
            "Split it into smaller files.",
        )
    else:
        what, setting = "an export", "IMPORT_MAX_EXPORT_MB"
        advice = "Load it with the load_export command, or raise the limit."
    given = f"is {human_size(size)}" if size is not None else f"is larger than {human_size(limit)}"
    return f"{name} {given}; {what} may be at most {human_size(limit)} ({setting}). {advice}"


class LimitHandler(FileUploadHandler):
    """First of a request's upload handlers: an upload that grows past its size limit is
    skipped as it arrives (the rest of it is read and dropped, never stored), and the reason
    kept in `refused` by form field for the form to show."""

    KINDS = {"ids_file": IDS, "export_file": EXPORT}

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.refused: dict[str, str] = {}

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        kind = self.KINDS.get(self.field_name, EXPORT)
        if start + len(raw_data) > size_limit(kind):
            name = self.file_name or self.field_name
            self.refused[self.field_name] = size_problem(kind, name, None) or ""
            raise SkipFile
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler builds the file


def save(upload: Any, name: str | None = None) -> str:
    """Store an uploaded file (or bytes) for its import; returns its name in the storage."""
    suffix = Path(name or upload.name).suffix.lower()[:10]
    target = f"{FOLDER}/{timezone.now():%Y%m%d}/{uuid.uuid4().hex}{suffix}"
    if isinstance(upload, bytes):
        upload = ContentFile(upload)
    return default_storage.save(target, upload)


def discard(name: str) -> None:
    try:
        default_storage.delete(name)
    except Exception:  # the import's outcome is recorded; a stray file is only logged
        log.exception("could not remove the upload %s", name)


def _binary(handle: Any) -> IO[bytes]:
    """The file object behind a storage File (zipfile wants a real stream)."""
    return getattr(handle, "file", handle)


def import_upload(
    kind: str,
    name: str,
    filename: str,
    *,
    user_pk: int | None = None,
    batch_pk: int | None = None,
    fetch: bool = False,
) -> ImportBatch:
    """Import an uploaded id list (kind "ids") or export ("export") from the default storage,
    then queue a fetch for the new ids if `fetch`. Returns the batch, which ends done or failed.

    The upload is removed afterwards whatever happens: success, a refused file, any exception.
    A worker killed mid-import leaves the upload and its batch "running": django-q2 re-delivers
    the task after Q_RETRY and the import starts over (loading never duplicates); if it is not
    re-delivered (it timed out), `batches.sweep_stopped_imports` fails the batch and removes
    the upload. A re-delivered task whose batch was closed meanwhile does nothing."""
    source = ImportBatch.Source.CSV if kind == IDS else ImportBatch.Source.EXPORT
    batch = ImportBatch.objects.filter(pk=batch_pk).first() if batch_pk else None
    if batch is None:
        batch = ImportBatch(source=source, filename=filename, created_by_id=user_pk)
    try:
        if batch.is_finished:
            return batch
        batch.upload_name = name
        _import(kind, name, filename, batch)
        if fetch and kind == IDS and batch.status == ImportBatch.Status.DONE:
            queue_batch_fetch(batch)
    except Exception:
        if batch.status != ImportBatch.Status.FAILED:  # else recorded (and logged) already
            log.exception("import of %s (%s) stopped", filename, name)
    finally:
        discard(name)
        if batch.pk:
            ImportBatch.objects.filter(pk=batch.pk).update(upload_name="")
        batch.upload_name = ""
    return batch


def _import(kind: str, name: str, filename: str, batch: ImportBatch) -> None:
    try:
        handle = default_storage.open(name, "rb")
    except Exception as error:  # gone (removed, another storage), or not a name in it at all
        with running(batch, all_or_nothing=kind == IDS):
            raise IntakeError(
                f"The uploaded file cannot be opened from the storage ({error}); upload it again."
            ) from None
    with handle:
        if kind == IDS:
            import_thread_ids(utf8_lines(_binary(handle)), batch=batch)
        else:
            load_export_file(_binary(handle), filename, batch=batch)


# --- the import page's entry point --------------------------------------------------------------
def start_import(
    user: User,
    *,
    pasted: str = "",
    ids_file: UploadedFile | None = None,
    export_file: UploadedFile | None = None,
) -> ImportBatch:
    """The import page's one input — pasted ids, an id file or an export — imported now when it
    is small, else by a worker (the batch shows its progress). Imported ids are queued for
    fetching when a source API answers. Returns the batch."""
    kind = EXPORT if export_file is not None else IDS
    fetch = kind == IDS and source_configured()
    limit = INLINE_FETCH_IMPORT_LIMIT if fetch else INLINE_IMPORT_LIMIT
    if pasted:
        if len(pasted.encode()) <= limit:
            batch = ImportBatch(
                source=ImportBatch.Source.PASTE, filename="pasted ids", created_by=user
            )
            try:
                import_thread_ids(pasted.splitlines(), batch=batch)
            except IntakeError:
                return batch  # recorded on the batch
            if fetch:
                queue_batch_fetch(batch)
            return batch
        name = save(pasted.encode(), "pasted.txt")
        return _to_worker(kind, name, "pasted ids", user, fetch, ImportBatch.Source.PASTE)
    upload = export_file or ids_file
    if upload is None:
        raise ValueError("nothing to import: give pasted ids, an id file or an export")
    filename = upload.name or "upload"
    name = save(upload)
    if (upload.size or 0) <= limit:
        return import_upload(kind, name, filename, user_pk=user.pk, fetch=fetch)
    source = ImportBatch.Source.CSV if kind == IDS else ImportBatch.Source.EXPORT
    return _to_worker(kind, name, filename, user, fetch, source)


def _to_worker(
    kind: str, name: str, filename: str, user: User, fetch: bool, source: str
) -> ImportBatch:
    from django.db import transaction
    from django_q.tasks import async_task

    from migrations_app import states

    broker = states.recording_broker()
    options = {"broker": broker} if broker else {}
    with transaction.atomic():  # the ORM broker writes to this database: both or neither
        batch = ImportBatch.objects.create(
            source=source, filename=filename, created_by=user, upload_name=name
        )
        async_task(
            "migrations_app.tasks.import_file",
            kind,
            name,
            filename,
            user_pk=user.pk,
            batch_pk=batch.pk,
            fetch=fetch,
            group=f"import {batch.pk}",
            **options,
        )
        if broker is not None:
            ImportBatch.objects.filter(pk=batch.pk).update(task_row=broker.last_row)
    return batch

"""An import batch's life: running, then done or failed with its counts, whatever happens.

The batch is the report staff read on the import page: what was new, already known, invalid
(file, line, thread id, reason), skipped, changed on the way in, and — for ids — how many of the
fetches queued for them have come back.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from migrations_app.models import ErrorKind, ImportBatch, ThreadStatus

log = logging.getLogger(__name__)


def human_size(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{size} bytes"


class IntakeError(Exception):
    """Input that cannot be read at all (the whole file, not one line of it)."""


def start(batch: ImportBatch) -> None:
    """Running from now, with its counts from zero (a re-delivered task starts over)."""
    batch.status = ImportBatch.Status.RUNNING
    batch.started_at = batch.heartbeat_at = timezone.now()
    batch.finished_at = None
    batch.new_count = batch.duplicate_count = batch.invalid_count = batch.skipped_count = 0
    batch.errors, batch.warnings = [], []
    batch.save()


def finish(batch: ImportBatch) -> None:
    batch.status = ImportBatch.Status.DONE
    batch.finished_at = timezone.now()
    batch.save()


def fail(batch: ImportBatch, message: str, *, nothing_kept: bool) -> None:
    """Failed with `message` first among its errors. `nothing_kept`: the import was all or
    nothing and rolled back, so its counts go back to zero."""
    if nothing_kept:
        batch.new_count = batch.duplicate_count = batch.skipped_count = 0
    batch.status = ImportBatch.Status.FAILED
    batch.finished_at = timezone.now()
    batch.errors.insert(0, {"file": batch.filename, "line": None, "message": message})
    try:
        batch.save()
    except Exception:  # the database itself failed: the sweep will close the batch later
        log.exception("import batch %s: could not record its failure", batch.pk)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:500] if text else type(error).__name__


def describe_decode_error(error: UnicodeDecodeError, after_line: int | None = None) -> str:
    bad = error.object[error.start : error.start + 1].hex() if error.object else "?"
    where = f" after line {after_line}" if after_line else ""
    return f"not UTF-8 text (byte 0x{bad}{where}); save the file as UTF-8"


@contextmanager
def running(batch: ImportBatch, *, all_or_nothing: bool) -> Iterator[ImportBatch]:
    """Run an import on `batch`: it ends done, or failed with a one-line reason and the counts of
    what was kept, whatever exception stops it (the exception is re-raised; anything but an
    IntakeError is logged with its traceback, which never goes into the batch)."""
    start(batch)
    kept = (
        "nothing was imported"
        if all_or_nothing
        else "the threads stored before it are kept; loading the same export again stores the "
        "rest without duplicating any"
    )
    try:
        yield batch
    except IntakeError as error:
        fail(batch, str(error), nothing_kept=all_or_nothing)
        raise
    except (KeyboardInterrupt, SystemExit):
        fail(batch, f"Import interrupted: {kept}.", nothing_kept=all_or_nothing)
        raise
    except Exception as error:
        log.exception("import batch %s stopped", batch.pk)
        fail(
            batch,
            f"Import stopped, {kept}: {_first_line(error)} ({type(error).__name__})",
            nothing_kept=all_or_nothing,
        )
        raise
    finish(batch)


# --- batches whose worker stopped ---------------------------------------------------------------
# A running import moves its heartbeat on at least this often (each chunk it stores; a chunk of a
# few hundred threads takes seconds): one silent for longer lost its worker.
HEARTBEAT_STALE = timedelta(minutes=5)


def sweep_stopped_imports() -> int:
    """Imports nothing will finish, each failed with the reason and its upload removed: running
    with no heartbeat for HEARTBEAT_STALE (its worker was killed, or django-q2 stopped it at
    Q_TIMEOUT; `load_export` on the command line beats as it goes, however long it runs), or
    pending while its task left the queue unrun. Returns how many."""
    from django.db.models import Exists, OuterRef
    from django_q.models import OrmQ

    silent = timezone.now() - HEARTBEAT_STALE
    stopped = ImportBatch.objects.filter(status=ImportBatch.Status.RUNNING).filter(
        Q(heartbeat_at__lt=silent) | Q(heartbeat_at__isnull=True, started_at__lt=silent)
    )
    count = 0
    for batch in stopped:
        _close_stopped(
            batch,
            "The import stopped without finishing: its worker was killed or ran past "
            f"Q_TIMEOUT ({settings.Q_CLUSTER['timeout']} s). Threads stored before it are kept; "
            "import the file again to finish (nothing is duplicated), or load a large export "
            "with `manage.py load_export`.",
        )
        count += 1
    task = OrmQ.objects.filter(pk=OuterRef("task_row"))
    lost = ImportBatch.objects.filter(
        ~Exists(task),
        status=ImportBatch.Status.PENDING,
        task_row__isnull=False,
        created_at__lt=timezone.now() - timedelta(minutes=1),
    )
    for batch in lost:
        _close_stopped(
            batch,
            "The import never started: its task left the queue without running it (purged, or "
            "lost). Nothing was imported; upload the file again.",
        )
        count += 1
    return count


def _close_stopped(batch: ImportBatch, reason: str) -> None:
    from migrations_app.intake import uploads

    fail(batch, reason, nothing_kept=batch.source != ImportBatch.Source.EXPORT)
    if batch.upload_name:
        uploads.discard(batch.upload_name)
        ImportBatch.objects.filter(pk=batch.pk).update(upload_name="")


# --- fetch progress -----------------------------------------------------------------------------
_NEVER_FETCHED = Q(fetched_at__isnull=True)
_FAILED_UNFETCHED = _NEVER_FETCHED & Q(status=ThreadStatus.FAILED)
# Where each thread stands with its fetch: the batch page's counts and the threads list's
# "fetch" filter, one definition for both (so a count's link lists exactly its threads).
FETCH_OUTCOMES: dict[str, Q] = {
    "fetched": ~_NEVER_FETCHED,
    "not_found": _FAILED_UNFETCHED & Q(error_kind=ErrorKind.NOT_FOUND),
    "failed": _FAILED_UNFETCHED & ~Q(error_kind=ErrorKind.NOT_FOUND),
    "waiting": _NEVER_FETCHED & ~Q(status=ThreadStatus.FAILED),
}


def fetch_progress(batch: ImportBatch) -> dict[str, int]:
    """Of the batch's threads: fetched (mirrored), not found at the source, failed otherwise
    before they were fetched, and still waiting. One aggregate query."""
    return batch.threads.aggregate(
        **{outcome: Count("pk", filter=condition) for outcome, condition in FETCH_OUTCOMES.items()}
    )

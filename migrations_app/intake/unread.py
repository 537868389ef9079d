"""Threads an export names but its exporter could not read (a v1 thread file whose "thread" is
null, or the manifest's `threads_failed`): they count like every other thread.

Each is registered as failed, error kind "not in the export", with the reason the export gives
("not exported: not_found_or_deleted, according to the export of 2026-08-20T10:00:00Z"), or
marked so if it was registered already and nothing better is known of it. A thread mirrored by
another export or a fetch, or queued, running or migrated, is never touched: the batch's report
says it was kept. Either way the thread is marked as named by an export that could not read it
(coverage.py counts it among the threads "exported with errors") and is one of the batch's.
"""

from django.utils import timezone

from migrations_app import bulk, states
from migrations_app.intake.layouts import Unread
from migrations_app.models import Attempt, ErrorKind, ExportState, ImportBatch, Thread
from migrations_app.paging import chunks

CHUNK = 1000


def register(entries: list[tuple[Unread, str, int | None]], batch: ImportBatch) -> None:
    """`entries`: (record, file, line), one per thread id."""
    for chunk in chunks(entries, CHUNK):
        reasons = {record.thread_id: record.reason for record, _, _ in chunk}
        registered, marked = states.not_exported(reasons, batch.pk)
        threads = Thread.objects.filter(thread_id__in=list(reasons))
        threads.filter(export_state=ExportState.NONE).update(export_state=ExportState.UNREAD)
        rows = list(threads.values_list("thread_id", "pk", "import_batch_id"))
        bulk.add_members(batch.pk, [pk for _, pk, owner in rows if owner != batch.pk])
        pk_of = {thread_id: pk for thread_id, pk, _ in rows}
        _history(chunk, registered | marked, pk_of, batch)
        batch.not_exported_count += len(chunk)
        for record, where, line in chunk:
            if record.thread_id not in registered | marked:
                batch.add_warning(
                    f"{record.thread_id}: {record.reason}; kept as it is (mirrored from another "
                    "export or a fetch, or queued, running or migrated)",
                    file=where,
                    line=line,
                )


def _history(
    chunk: list[tuple[Unread, str, int | None]],
    failed: set[str],
    pk_of: dict[str, int],
    batch: ImportBatch,
) -> None:
    now = timezone.now()
    Attempt.objects.bulk_create(
        Attempt(
            thread_id=pk_of[record.thread_id],
            action=Attempt.Action.IMPORT,
            outcome=Attempt.Outcome.FAILED,
            actor=batch.created_by,
            actor_label=f"import batch #{batch.pk}",
            started_at=now,
            finished_at=now,
            error_kind=ErrorKind.NOT_EXPORTED,
            error_message=record.reason,
            detail={
                "batch": batch.pk,
                "file": where,
                "line": line,
                **({"detail": record.detail} if record.detail else {}),
            },
        )
        for record, where, line in chunk
        if record.thread_id in failed and record.thread_id in pk_of
    )

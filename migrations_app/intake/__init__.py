"""Intake: fill the mirror from thread-id lists, export files or the live source API.

One module per job, plain functions over ids and files; the commands, tasks and admin pages
call these:

- ids.py — the id list (CSV or one id per line), all or nothing
- exports.py — export files (directory, .jsonl, .zip), streamed, zip limits
- layouts/ — one reader per export layout (the console's own, assistants-thread-export/v1)
- unread.py — threads an export names but could not read: registered as failed
- source.py — the live source API: fetch a thread, sync assistants
- mirror.py — storing checked bundles and assistants into the mirror
- validation.py — what a bundle must be for conversion and the database
- uploads.py — uploads in the default storage, their limits and their import
- batches.py — an import batch's life and report

The mapping CSV is an output, beside the others: migrations_app/mapping.py.
"""

from migrations_app.intake.batches import IntakeError, fetch_progress, sweep_stopped_imports
from migrations_app.intake.exports import load_export, read_export
from migrations_app.intake.ids import import_thread_id_file, import_thread_ids, parse_thread_ids
from migrations_app.intake.mirror import (
    BundleRejected,
    prepare,
    store_bundles,
    upsert_assistants,
)
from migrations_app.intake.source import (
    fetch_for_staff,
    queue_batch_fetch,
    queue_fetches,
    source_configured,
    store_fetched,
    sync_assistants,
)
from migrations_app.intake.validation import THREAD_ID, check_assistant, check_bundle
from migrations_app.mapping import MAPPING_HEADER, mapping_rows, write_mapping
from migrations_app.models import ImportBatch

__all__ = [
    "MAPPING_HEADER",
    "THREAD_ID",
    "BundleRejected",
    "ImportBatch",
    "IntakeError",
    "check_assistant",
    "check_bundle",
    "fetch_for_staff",
    "fetch_progress",
    "import_thread_id_file",
    "import_thread_ids",
    "load_export",
    "mapping_rows",
    "parse_thread_ids",
    "prepare",
    "queue_batch_fetch",
    "queue_fetches",
    "read_export",
    "source_configured",
    "store_bundles",
    "store_fetched",
    "sweep_stopped_imports",
    "sync_assistants",
    "upsert_assistants",
    "write_mapping",
]

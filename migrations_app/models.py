"""The mirror of the source API, the thread → conversation mapping and the migration's history.

The mirror keeps every source object's JSON whole, so conversion never needs the source again and
a retry reuses exactly the same input. The few columns beside the JSON are the ones staff filter
and sort on.
"""

import time
from datetime import timedelta
from typing import Self

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce, Now
from django.utils import timezone


class ImportBatch(models.Model):
    class Cutover(models.TextChoices):
        LIVE = "live", "Live: synced while the source still changes"
        FINAL_SYNC = "final_sync", "Final sync: the application stopped writing"
        CUT_OVER = "cut_over", "Cut over: no more syncs, the mapping is final"

    class Source(models.TextChoices):
        CSV = "csv", "CSV / id list"
        PASTE = "paste", "Pasted ids"
        EXPORT = "export", "Export file"
        API = "api", "Live API"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    source = models.CharField(max_length=16, choices=Source)
    filename = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status, default=Status.PENDING)
    new_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    invalid_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    # [{"line": 12, "file": "threads/x.json", "message": "..."}], capped at MAX_ERRORS.
    errors = models.JSONField(default=list, blank=True)
    # What was changed on the way in but still loaded (NUL characters replaced), same shape.
    warnings = models.JSONField(default=list, blank=True)
    # When the current run began: a batch still running long after Q_TIMEOUT lost its worker.
    started_at = models.DateTimeField(null=True, blank=True)
    # The uploaded file in the default storage while it waits for its import; removed after.
    upload_name = models.CharField(max_length=255, blank=True)
    # Fetch tasks queued for the batch's threads (0: none were, e.g. no source API answers).
    fetch_queued = models.PositiveIntegerField(default=0)
    # Where the batch's threads stand in the cutover to the destination (see sync.py).
    cutover = models.CharField(
        max_length=16, choices=Cutover, default=Cutover.LIVE, db_default=Cutover.LIVE
    )
    cutover_changed_at = models.DateTimeField(null=True, blank=True)
    # Moved on by a running import as it goes: a batch running with an old one lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The queued task that imports an upload (its django-q2 broker row): a batch pending while
    # its task is gone is failed by the sweeper rather than left waiting.
    task_row = models.BigIntegerField(null=True, blank=True)
    # Threads the export names but could not read itself (its exporter's failures): registered
    # as failed "not in the export" where nothing better is known (intake/unread.py).
    not_exported_count = models.PositiveIntegerField(default=0)
    # The export layouts read ("assistants-thread-export/v1", "own"), and what a v1 manifest
    # says about the export (when, from where, its counts), for the batch page.
    layout = models.CharField(max_length=100, blank=True)
    manifest = models.JSONField(default=dict, blank=True)

    MAX_ERRORS = 1000

    class Meta:
        verbose_name_plural = "import batches"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        name = self.filename or self.get_source_display()
        return f"#{self.pk} {name}"

    def add_error(self, message: str, *, line: int | None = None, file: str | None = None) -> None:
        self.invalid_count += 1
        if len(self.errors) < self.MAX_ERRORS:
            self.errors.append({"file": file, "line": line, "message": message})

    def add_warning(
        self, message: str, *, line: int | None = None, file: str | None = None
    ) -> None:
        if len(self.warnings) < self.MAX_ERRORS:
            self.warnings.append({"file": file, "line": line, "message": message})

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)


class Assistant(models.Model):
    assistant_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=256, blank=True)
    model = models.CharField(max_length=128, blank=True)
    data = models.JSONField()
    created_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "assistant_id"]
        permissions = [("sync_assistants", "Can sync assistants from the source")]

    def __str__(self) -> str:
        return f"{self.name} ({self.assistant_id})" if self.name else self.assistant_id


class ThreadStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class ErrorKind(models.TextChoices):
    NOT_FOUND = "not_found", "Not found at the source"
    # The destination does not know the conversation (deleted, or the key names another project).
    DESTINATION_NOT_FOUND = "dest_not_found", "Not found at the destination"
    INVALID = "invalid", "Rejected as invalid"
    AUTH = "auth", "Authentication / permission"
    TOO_LARGE = "too_large", "Too large for the API"
    RATE_LIMITED = "rate_limited", "Rate limited"
    TRANSIENT = "transient", "Network or server error"
    CONFLICT = "conflict", "Conversation does not match"
    INTERNAL = "internal", "Console error"
    DATABASE = "database", "Console database error"
    # Verified once, then gone or changed at the destination (the retention watchdog).
    LOST = "lost", "Lost at the destination"
    # The export named the thread but its exporter could not read it (thread: null).
    NOT_EXPORTED = "not_exported", "Not in the export"


class ExportState(models.TextChoices):
    """What the exports loaded so far hold of a thread (the best of them: whole beats with
    errors beats unread); the coverage figures count threads by it (coverage.py)."""

    NONE = "", "In no export"
    WHOLE = "whole", "Exported whole"
    ERRORS = "errors", "Exported with errors"
    UNREAD = "unread", "Named by an export that could not read it"


class Thread(models.Model):
    thread_id = models.CharField(max_length=64, unique=True)
    assistant = models.ForeignKey(Assistant, null=True, blank=True, on_delete=models.SET_NULL)
    import_batch = models.ForeignKey(
        ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="threads"
    )
    # The source Thread object; null until the thread was fetched or loaded from an export.
    data = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(null=True, blank=True, help_text="Source creation time")
    fetched_at = models.DateTimeField(null=True, blank=True)
    message_count = models.PositiveIntegerField(default=0, db_default=0)

    # Migration state: one row per thread, so the console's biggest list needs no join.
    # Database defaults too, so bulk intake can insert bare ids in plain SQL.
    status = models.CharField(
        max_length=16,
        choices=ThreadStatus,
        default=ThreadStatus.PENDING,
        db_default=ThreadStatus.PENDING,
    )
    attempts = models.PositiveIntegerField(default=0, db_default=0)
    items_total = models.PositiveIntegerField(default=0, db_default=0)
    items_committed = models.PositiveIntegerField(default=0, db_default=0)
    warning_count = models.PositiveIntegerField(default=0, db_default=0)
    error_kind = models.CharField(max_length=16, choices=ErrorKind, blank=True, db_default="")
    error_message = models.TextField(blank=True, db_default="")
    # The message with its ids and numbers taken out (reasons.error_template): the dashboard's
    # failure groups are (error_kind, error_template), so thousands of ids the source does not
    # know are one group. Written with the message, by states.
    error_template = models.CharField(max_length=200, blank=True, db_default="")
    error_http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_request_id = models.CharField(max_length=128, blank=True, db_default="")
    # "host:pid:thread #token": unique per lease taken, so a worker that lost its lease can never
    # mistake a later lease for its own.
    lease_owner = models.CharField(max_length=128, blank=True, db_default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    task_group = models.CharField(max_length=100, blank=True, db_default="")
    # The queued django-q2 task (its broker row, OrmQ.pk) that will run this thread: the sweeper
    # re-queues a queued thread whose task row is gone. Null for an inline run.
    queued_task = models.BigIntegerField(null=True, blank=True)
    # The server id of the last item committed to the live conversation: after an ambiguous write
    # only what came after it is listed (one request), not the whole conversation.
    last_item_id = models.CharField(max_length=64, blank=True, db_default="")
    # What staff asked for (migrate, retry, re-migrate): the worker's history row names it.
    requested_action = models.CharField(max_length=16, blank=True, db_default="")
    # The live conversation's id, kept on the row so the list, the search and the "upload
    # started" rule need no join. The Conversation table keeps the history.
    conversation_id = models.CharField(max_length=64, blank=True, db_default="")
    # Counts the WriteClaims recorded for the thread: a worker's `succeed` is fenced on the value
    # it verified with, so a late write announced after its last listing is never left unseen.
    claim_seq = models.PositiveIntegerField(default=0, db_default=0)
    # Delta re-sync (sync.py): the last source message the verified conversation holds (the
    # cursor the next sync lists after), when a sync last found the thread up to date, and why
    # the source no longer matches what was migrated ("": it does).
    # The queued fetch task of a staff fetch (its broker row), until the fetch says how it went:
    # a fetch whose task ended without a word (timed out, its worker killed) is recorded failed.
    fetch_task = models.BigIntegerField(null=True, blank=True)
    synced_message_id = models.CharField(max_length=64, blank=True, db_default="")
    synced_at = models.DateTimeField(null=True, blank=True)
    diverged = models.TextField(blank=True, db_default="")
    updated_at = models.DateTimeField(default=timezone.now, db_default=Now())

    # Coverage (coverage.py): registered from an id list staff gave, and what the exports hold.
    listed = models.BooleanField(default=False, db_default=False)
    export_state = models.CharField(
        max_length=8, choices=ExportState, blank=True, default="", db_default=""
    )
    # What the export the mirror came from said beyond the API's objects: {"layout",
    # "exported_at", "errors": [the exporter's errors about this thread], "files": {file id:
    # File object}}. Null when the mirror came from the source API or said nothing more. The
    # errors are warnings of the thread (conversion.export_warnings). A later mirror without
    # them (a fetch) keeps the files as {"files", "files_from": "the … export of …"}.
    export_info = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at"]
        permissions = [
            ("fetch_thread", "Can fetch threads from the source"),
            ("migrate_thread", "Can migrate threads"),
            ("retry_thread", "Can retry failed threads"),
            ("cancel_thread", "Can cancel queued threads"),
            ("remigrate_thread", "Can re-migrate migrated threads"),
            ("import_threads", "Can import thread ids and exports"),
            ("sync_thread", "Can sync new messages and run a cutover"),
        ]
        indexes = [
            # The threads changelist filtered by status and sorted by recency.
            models.Index(fields=["status", "-updated_at"], name="thread_status_updated_idx"),
            # The default changelist order and the dashboard's "migrated per minute" chart.
            models.Index(fields=["-updated_at"], name="thread_updated_idx"),
            # A failure group's threads, newest first (the dashboard's link), counted for its
            # remedy's confirmation from the index alone (status and conversation_id decide what
            # the remedy applies to), and the error-kind filter.
            models.Index(
                fields=["error_kind", "error_template", "-updated_at"],
                include=["status", "conversation_id"],
                condition=Q(status="failed"),
                name="thread_failed_reason_idx",
            ),
            # Search by (the start of) a live conversation id: LIKE 'conv_x%' in any collation.
            models.Index(
                fields=["conversation_id"],
                opclasses=["varchar_pattern_ops"],
                condition=~Q(conversation_id=""),
                name="thread_conversation_prefix_idx",
            ),
            # The dashboard's duration estimate: the sizes of the threads not migrated yet, in
            # one index-only scan that shrinks as threads succeed.
            models.Index(
                fields=["status"],
                include=["fetched_at", "message_count", "items_total"],
                condition=~Q(status="succeeded"),
                name="thread_remaining_work_idx",
            ),
            # The dashboard's "being retried now" line, counted without reading the (possibly
            # millions of) other queued threads.
            models.Index(
                fields=["status"],
                condition=Q(status__in=["queued", "running"], requested_action="retry"),
                name="thread_retrying_idx",
            ),
            # The stuck-thread sweeper: running threads whose lease expired.
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="running"),
                name="thread_running_lease_idx",
            ),
            # A sync pass: migrated threads, the least recently checked first.
            models.Index(
                fields=["synced_at"],
                condition=Q(status="succeeded", diverged=""),
                name="thread_sync_due_idx",
            ),
            # The sweeper: staff fetches still waiting for their task.
            models.Index(
                fields=["fetch_task"],
                condition=Q(fetch_task__isnull=False),
                name="thread_fetch_task_idx",
            ),
            # The dashboard's "new messages not synced yet" line.
            models.Index(
                fields=["status"],
                condition=Q(status__in=["queued", "running"], requested_action="sync"),
                name="thread_sync_waiting_idx",
            ),
            # The "diverged" filter and the dashboard's line.
            models.Index(
                fields=["updated_at"], condition=~Q(diverged=""), name="thread_diverged_idx"
            ),
            # The coverage differences' lists (coverage.py), newest first like the list itself.
            models.Index(
                fields=["-updated_at"],
                condition=Q(listed=True) & Q(export_state__in=["", "unread"]),
                name="thread_listed_unexported_idx",
            ),
            models.Index(
                fields=["-updated_at"],
                condition=Q(listed=False) & Q(export_state__in=["whole", "errors"]),
                name="thread_exported_unlisted_idx",
            ),
            models.Index(
                fields=["-updated_at"],
                condition=Q(export_state__in=["errors", "unread"]),
                name="thread_export_errors_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.thread_id


class BatchMember(models.Model):
    """A thread an import batch named (in its id list, or in its export) that was registered
    before it, by another batch or none. With the threads it registered itself
    (`Thread.import_batch`) this is the batch's whole set, for its coverage; a new id costs the
    import no row here."""

    # No index of its own: the unique constraint's (batch, thread) serves it.
    batch = models.ForeignKey(
        ImportBatch, on_delete=models.CASCADE, related_name="members", db_index=False
    )
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="batch_members")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "thread"], name="batch_member_unique")
        ]

    def __str__(self) -> str:
        return f"{self.batch_id}: {self.thread_id}"


class Message(models.Model):
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="messages")
    message_id = models.CharField(max_length=64)
    # Position in the source's ascending list: the tie-breaker for equal created_at.
    position = models.PositiveIntegerField()
    role = models.CharField(max_length=16)
    created_at = models.BigIntegerField(help_text="Unix seconds, as the source gave it")
    data = models.JSONField()

    class Meta:
        ordering = ["created_at", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["thread", "message_id"], name="message_unique_per_thread"
            )
        ]
        indexes = [
            # Loading a thread's messages in conversation order (conversion and the thread page).
            models.Index(
                fields=["thread", "created_at", "position"], name="message_thread_order_idx"
            )
        ]

    def __str__(self) -> str:
        return self.message_id


class RunStep(models.Model):
    """A run step that carries tool calls (message_creation steps are not kept)."""

    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="run_steps")
    step_id = models.CharField(max_length=64)
    run_id = models.CharField(max_length=64)
    created_at = models.BigIntegerField()
    data = models.JSONField()

    class Meta:
        ordering = ["created_at", "step_id"]
        constraints = [
            models.UniqueConstraint(fields=["thread", "step_id"], name="run_step_unique_per_thread")
        ]

    def __str__(self) -> str:
        return self.step_id


class ConversationQuerySet(models.QuerySet):
    def live(self) -> Self:
        return self.filter(replaced_at__isnull=True)


class Conversation(models.Model):
    """The conversation a thread became. At most one live conversation per thread; a re-migration
    marks the old one replaced (kept as history) before creating the next."""

    thread = models.ForeignKey(Thread, on_delete=models.PROTECT, related_name="conversations")
    conversation_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    items_committed = models.PositiveIntegerField(default=0)
    # The server id of the last item we know is committed: reconciling after an ambiguous write
    # lists only what came after it (one request) instead of the whole conversation.
    last_item_id = models.CharField(max_length=64, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_item_count = models.PositiveIntegerField(null=True, blank=True)
    replaced_at = models.DateTimeField(null=True, blank=True)
    # A re-migrate was queued: this conversation stays the thread's (and the mapping's) until a
    # worker starts the new upload, and again if the re-migrate is cancelled before that.
    replace_requested_at = models.DateTimeField(null=True, blank=True)
    # The conversion options the items were built with: a resumed upload must build the same
    # items, whatever the settings say now (a re-migrate uses the current ones).
    options = models.JSONField(default=dict, blank=True)
    # The retention watchdog's last re-read (null: not since it was verified).
    watched_at = models.DateTimeField(null=True, blank=True)
    # Continuation readiness (readiness.py): the conversation's size in tokens for the model its
    # assistant maps to, and whether that leaves no room in the model's context window.
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    # Database defaults too: conversations are also inserted in plain SQL (benchmarks, repairs).
    tokens_model = models.CharField(max_length=128, blank=True, db_default="")
    tokens_counted_at = models.DateTimeField(null=True, blank=True)
    tokens_error = models.TextField(blank=True, db_default="")
    exceeds_context = models.BooleanField(null=True, blank=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["thread"],
                condition=Q(replaced_at__isnull=True),
                name="one_live_conversation_per_thread",
            )
        ]
        indexes = [
            # The retention watchdog: live verified conversations, least recently read first.
            models.Index(
                Coalesce("watched_at", "verified_at"),
                condition=Q(replaced_at__isnull=True, verified_at__isnull=False),
                name="conversation_watch_due_idx",
            ),
            # Readiness: conversations waiting for their first token count.
            models.Index(
                fields=["verified_at"],
                condition=Q(
                    replaced_at__isnull=True, verified_at__isnull=False, tokens_counted_at=None
                ),
                name="conversation_uncounted_idx",
            ),
            # Readiness: the (few) conversations too long for their model's context.
            models.Index(
                fields=["thread"],
                condition=Q(replaced_at__isnull=True, exceeds_context=True),
                name="conversation_exceeds_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.conversation_id


class Attempt(models.Model):
    """Who did what to a thread, when, and how it ended: the audit trail and the retry history."""

    class Action(models.TextChoices):
        IMPORT = "import", "Import"
        FETCH = "fetch", "Fetch from source"
        MIGRATE = "migrate", "Migrate"
        RETRY = "retry", "Retry"
        REMIGRATE = "remigrate", "Re-migrate"
        CANCEL = "cancel", "Cancel"
        # A worker whose late write landed after the thread was verified takes it back.
        REPAIR = "repair", "Take back a late write"
        SYNC = "sync", "Sync new messages"
        WATCH = "watch", "Retention check"

    class Outcome(models.TextChoices):
        QUEUED = "queued", "Queued"
        STARTED = "started", "Started"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        SKIPPED = "skipped", "Skipped"
        # The worker stopped (killed, or its lease taken over) before it could say how it ended.
        ABANDONED = "abandoned", "Abandoned"

    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="history")
    action = models.CharField(max_length=16, choices=Action)
    outcome = models.CharField(max_length=16, choices=Outcome)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # "worker host:pid", "cli", "sweeper": who acted when no user did.
    actor_label = models.CharField(max_length=128, blank=True)
    attempt_number = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    conversation_id = models.CharField(max_length=64, blank=True)
    error_kind = models.CharField(max_length=16, choices=ErrorKind, blank=True)
    error_message = models.TextField(blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    # The lease the worker held for this attempt: how the sweeper finds attempts of dead workers.
    lease_owner = models.CharField(max_length=128, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            # The thread page's history table, newest first.
            models.Index(fields=["thread", "-started_at"], name="attempt_thread_recent_idx"),
            # The dashboard's worker health: the latest finished attempt.
            models.Index(fields=["-finished_at"], name="attempt_finished_idx"),
            # The sweeper: attempts still open, whose worker may have died.
            models.Index(
                fields=["thread"], condition=Q(outcome="started"), name="attempt_open_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.thread_id}: {self.outcome}"

    @property
    def who(self) -> str:
        return str(self.actor) if self.actor_id else self.actor_label


class WriteClaim(models.Model):
    """A write of items that may have reached a conversation without the console recording it:
    an answer that never came back, the write in flight when a worker lost its lease, or a late
    write its worker announced. It is the console's proof of authorship: only copies of the
    items a claim covers (items[start:start + count], appended after `after_item_id`, or the
    exact `item_ids` when the answer came back) are ever deleted from a conversation (DESIGN.md,
    "Provenance")."""

    class Reason(models.TextChoices):
        AMBIGUOUS = "ambiguous", "Answer lost"
        TAKEOVER = "takeover", "In flight when its worker lost the lease"
        LATE = "late", "Landed after its worker lost the lease"

    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="write_claims")
    conversation_id = models.CharField(max_length=64)
    start = models.PositiveIntegerField(help_text="Index of the first item the write could hold")
    count = models.PositiveIntegerField()
    after_item_id = models.CharField(max_length=64, blank=True)
    item_ids = models.JSONField(null=True, blank=True, help_text="Known when the answer came")
    owner = models.CharField(max_length=128, help_text="The lease the write was sent under")
    reason = models.CharField(max_length=16, choices=Reason)
    created_at = models.DateTimeField(default=timezone.now)
    # When a verification listed the conversation after the write could last have landed (a lease
    # after the claim): the sweeper verifies a thread that succeeded before that once more.
    checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # A verify loads the claims on its thread's live conversation.
            models.Index(fields=["thread", "conversation_id"], name="write_claim_thread_idx"),
            # The sweeper's recheck: claims not checked since they could last land.
            models.Index(
                fields=["created_at"],
                condition=Q(checked_at__isnull=True),
                name="write_claim_unchecked_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_reason_display()}: items {self.start}-{self.start + self.count - 1}"


class BulkAction(models.Model):
    """An action applied to more threads than one request should touch ("Select all N"): a
    worker applies it a page at a time, and this row is the progress staff follow. The threads
    acted on get their history rows as usual; the admin's log gets one entry for the whole."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    action = models.CharField(max_length=16, choices=Attempt.Action)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # The threads list's filters and search when it was asked for (its query string).
    selection = models.TextField(blank=True)
    eligible = models.PositiveIntegerField(help_text="Threads it applied to when confirmed")
    done = models.PositiveIntegerField(default=0, help_text="Threads acted on so far")
    # The last thread (pk) handled: a task that stopped resumes after it.
    last_pk = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status, default=Status.QUEUED)
    task_group = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    # When done: the selected threads it did not act on, by reason ({reason: count}).
    skipped = models.JSONField(default=dict, blank=True)
    # The queued task that applies it (its django-q2 broker row): a bulk action queued while its
    # task is gone is failed by the sweeper rather than left waiting.
    task_row = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Touched by every page applied: a row running but untouched for long lost its worker.
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_action_display()}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)


class HeartbeatQuerySet(models.QuerySet):
    def claim(self, name: str, every: timedelta) -> bool:
        """Claim the job `name` if it is due: True for the one process whose UPDATE moved it on
        (timed by the database's clock), however many processes offer to run it."""
        due = self.filter(name=name, next_due__lte=Now())
        if due.update(last_started=Now(), next_due=Now() + every):
            return True
        if not self.filter(name=name).exists():  # a fresh database: the first claim creates it
            self.get_or_create(name=name)
            return bool(due.update(last_started=Now(), next_due=Now() + every))
        return False

    def finished(self, name: str) -> None:
        self.filter(name=name).update(last_finished=Now())


class Heartbeat(models.Model):
    """A recurring job (the sweeper): when it last ran and next falls due. Every worker process
    offers to run it; the claim lets exactly one do so each time."""

    name = models.CharField(max_length=64, unique=True)
    last_started = models.DateTimeField(null=True, blank=True)
    last_finished = models.DateTimeField(null=True, blank=True)
    next_due = models.DateTimeField(default=timezone.now)

    objects = HeartbeatQuerySet.as_manager()

    def __str__(self) -> str:
        return self.name


class RateLimit(models.Model):
    """The request budget shared by every worker on every machine (GCRA).

    `theoretical_arrival` is the Unix time at which the next request may go without exceeding
    the rate; each request moves it one interval on in a single atomic UPDATE, so workers
    never need a lock or a second round trip.
    """

    name = models.CharField(max_length=64, unique=True)
    theoretical_arrival = models.FloatField(default=0)
    requests_total = models.BigIntegerField(default=0)
    throttled_total = models.BigIntegerField(default=0)
    # A tumbling one-minute window, for the dashboard's "current request rate".
    window_started = models.FloatField(default=0)
    window_requests = models.PositiveIntegerField(default=0)

    WINDOW_SECONDS = 60

    def __str__(self) -> str:
        return self.name

    def requests_in_window(self, now: float | None = None) -> int:
        now = now or time.time()
        return self.window_requests if self.window_started > now - self.WINDOW_SECONDS else 0


# --- the dashboard's counters (kept by database triggers: see tallies.py) ------------------------
class StatusTally(models.Model):
    """Threads per status, as delta rows: the count of a status is the sum of its rows."""

    status = models.CharField(max_length=16)
    count = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.status} {self.count:+d}"


class FailureTally(models.Model):
    """Failed threads per (error kind, error template), as delta rows."""

    error_kind = models.CharField(max_length=16, blank=True)
    error_template = models.CharField(max_length=200, blank=True)
    count = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.error_kind} {self.count:+d}"


class SuccessTally(models.Model):
    """Threads that became succeeded, per minute of their update, as delta rows."""

    minute = models.DateTimeField(db_index=True)
    count = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.minute:%H:%M} {self.count:+d}"


class ApiToken(models.Model):
    """An application's key to the lookup API (api.py): read-only, stored as a SHA-256 hash and
    shown once, revoked rather than deleted (its history stays)."""

    class Scope(models.TextChoices):
        READ = "read", "Read-only: look up threads"

    application = models.CharField(max_length=100, help_text="Who uses this token")
    # The token's first characters, to tell tokens apart on screen; the rest is only hashed.
    prefix = models.CharField(max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scope = models.CharField(max_length=16, choices=Scope, default=Scope.READ, editable=False)
    prioritize_on_lookup = models.BooleanField(
        default=False,
        help_text="A thread this application looks up that is not migrated yet is queued ahead "
        "of the rest.",
    )
    requests_per_minute = models.PositiveIntegerField(
        default=600,
        validators=[MinValueValidator(1)],
        help_text="Requests a minute (bursts of ten seconds' worth allowed); more are answered "
        "429 with Retry-After.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    # Written with the rate limit's own update (not once per request): see api_tokens.py.
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    # The token's budget (GCRA, as ratelimit.py): the time from which its next request is
    # within the rate, and how many requests the last update granted.
    theoretical_arrival = models.FloatField(default=0, editable=False)
    last_grant = models.IntegerField(default=0, editable=False)

    class Meta:
        ordering = ["application", "-created_at"]
        verbose_name = "API token"
        permissions = [("manage_api_tokens", "Can create and revoke API tokens")]

    def __str__(self) -> str:
        return f"{self.application} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class CoverageTally(models.Model):
    """Threads per (listed, export state, succeeded), as delta rows: the whole migration's
    coverage figures (coverage.py), kept by triggers like the tallies above."""

    listed = models.BooleanField()
    export_state = models.CharField(max_length=8, blank=True)
    succeeded = models.BooleanField()
    count = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.listed}/{self.export_state}/{self.succeeded} {self.count:+d}"

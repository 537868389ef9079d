"""What the console says after staff act: what was done, and what happens next."""

from django.contrib import messages
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import ngettext

from migrations_app.intake.source import Synced
from migrations_app.models import BulkAction, ImportBatch

NEXT_STEP = {
    "migrate": "The workers upload and verify each one; follow them on the {dashboard}.",
    "retry": "The workers resume each one where it stopped; follow them on the {dashboard}.",
    "remigrate": (
        "Each gets a new conversation (the old id stays in its history); follow them on the "
        "{dashboard}."
    ),
    "cancel": "They will not be uploaded; migrate them again whenever you want.",
    "fetch": "The workers copy their messages from the source; their pages show them when done.",
}
DONE = {
    "migrate": "queued",
    "retry": "queued",
    "remigrate": "queued",
    "cancel": "cancelled",
    "fetch": "queued for fetching",
}


def action_done(name: str, label: str, count: int) -> SafeString:
    """'Migrate: 12 threads queued. The workers upload and verify each one; …'"""
    said = ngettext(
        "%(action)s: %(count)d thread %(done)s.",
        "%(action)s: %(count)d threads %(done)s.",
        count,
    ) % {"action": label, "count": count, "done": DONE.get(name, "done")}
    next_step = NEXT_STEP.get(name, "")
    if "{dashboard}" not in next_step:
        return format_html("{} {}", said, next_step)
    before, after = next_step.split("{dashboard}")
    return format_html(
        '{} {}<a href="{}">dashboard</a>{}',
        said,
        before,
        reverse("admin:migrations_app_dashboard"),
        after,
    )


def bulk_started(bulk: BulkAction) -> SafeString:
    """'Migrate: 12,345 threads are handed to a worker, which applies it in the background, a
    page at a time: the list shows each thread as it is until the worker reaches it. Follow it
    on bulk action #3.'"""
    said = ngettext(
        "%(action)s: %(count)s thread is handed to a worker, which applies it in the background,",
        "%(action)s: %(count)s threads are handed to a worker, which applies it in the background,",
        bulk.eligible,
    ) % {"action": bulk.get_action_display(), "count": f"{bulk.eligible:,}"}
    return format_html(
        "{} a page at a time: the list shows each thread as it is until the worker reaches it. "
        'Follow it on <a href="{}">bulk action #{}</a>.',
        said,
        reverse("admin:migrations_app_bulkaction_change", args=[bulk.pk]),
        bulk.pk,
    )


def assistants_synced(synced: Synced) -> tuple[int, str]:
    """(message level, message) after "Sync assistants"."""
    if synced.failure:
        return messages.ERROR, f"Syncing assistants failed: {synced.failure.message}"
    count = ngettext("%d assistant", "%d assistants", synced.stored) % synced.stored
    message = f"Synced {count} from the source; threads that use them now show them."
    if synced.rejected:
        shown = "; ".join(f"{aid}: {why}" for aid, why in synced.rejected[:5])
        return messages.WARNING, f"{message} {len(synced.rejected)} could not be stored ({shown})."
    return messages.SUCCESS, message


def _lines(count: int) -> str:
    return ngettext("%(n)d invalid line", "%(n)d invalid lines", count) % {"n": count}


def import_done(batch: ImportBatch, source_configured: bool) -> tuple[int, SafeString | str]:
    """(message level, message) after an import form was sent: what was done and what happens
    next. The batch page the user lands on lists every error: the message points there instead
    of repeating them."""
    title = f"Import batch #{batch.pk}"
    if batch.status == ImportBatch.Status.FAILED:
        return messages.ERROR, f"{title} failed: nothing was imported (the reason is below)."
    if not batch.is_finished:
        return messages.INFO, (
            f"{title} is queued for a worker; this page shows its progress and refreshes itself "
            "until it is done."
        )
    if not batch.new_count and not batch.duplicate_count:
        problems = f" ({_lines(batch.invalid_count)}, listed below)" if batch.invalid_count else ""
        return messages.ERROR, f"{title}: no thread id found{problems}."
    export = batch.source == ImportBatch.Source.EXPORT
    said = ngettext("%(n)d new thread", "%(n)d new threads", batch.new_count) % {
        "n": batch.new_count
    }
    if batch.duplicate_count:
        said += f", {batch.duplicate_count} {'updated' if export else 'already known'}"
    if batch.invalid_count:
        said += f", {_lines(batch.invalid_count)} (listed below)"
    if batch.skipped_count:
        said += f", {batch.skipped_count} kept as they were (running or upload started)"
    if batch.fetch_queued:
        fetches = ngettext("%d fetch", "%d fetches", batch.fetch_queued) % batch.fetch_queued
        return messages.SUCCESS, (
            f"{title}: {said}. {fetches} from the source queued: the workers copy each thread's "
            "messages into the console, and this page counts them as they come back."
        )
    if not export and not source_configured:
        return messages.WARNING, (
            f"{title}: {said}. No source API is configured (ASSISTANTS_BASE_URL), so nothing is "
            "fetched: load an export with these threads' messages."
        )
    return messages.SUCCESS, format_html(
        'Import batch #{}: {}. Next: <a href="{}?import_batch__id__exact={}">open its threads</a>'
        " to {} them.",
        batch.pk,
        said,
        reverse("admin:migrations_app_thread_changelist"),
        batch.pk,
        "preview or migrate" if export else "migrate",
    )

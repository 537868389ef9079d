from argparse import ArgumentParser
from collections import Counter

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from migrations_app import states, sync
from migrations_app.models import Thread
from migrations_app.paging import chunks


class Command(BaseCommand):
    help = (
        "Append what was said at the source since the threads were migrated to their "
        "conversations (delta re-sync): by id, or --all migrated threads of batches not cut over. "
        "Each thread is checked with one request; those with new messages are synced. Without "
        "--inline the checks go to the django-q2 workers and the command returns at once."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("thread_ids", nargs="*", help="thread ids (thread_…)")
        parser.add_argument("--all", action="store_true", help="every migrated thread")
        parser.add_argument("--inline", action="store_true", help="check and sync here")

    def handle(
        self, *args: object, thread_ids: list[str], all: bool, inline: bool, **options: object
    ) -> None:
        if bool(thread_ids) == all:
            raise CommandError("Give thread ids, or --all (not both).")
        threads = Thread.objects.filter(thread_id__in=thread_ids) if thread_ids else None
        if threads is not None:
            unknown = set(thread_ids) - set(threads.values_list("thread_id", flat=True))
            if unknown:
                raise CommandError(f"Unknown thread ids: {', '.join(sorted(unknown))}")
        selected = sync.syncable(threads)
        skipped = (threads.count() if threads is not None else 0) - selected.count()
        if skipped > 0:
            self.stderr.write(
                self.style.WARNING(
                    f"Skipped {skipped}: not migrated, diverged, or in a batch cut over."
                )
            )
        pks = selected.order_by("pk").values_list("pk", flat=True)
        group = f"sync {timezone.now():%Y-%m-%d %H:%M:%S}"
        if not inline:
            count = sync.queue_checks(pks.iterator(chunk_size=5000), group=group)
            self.stdout.write(
                self.style.SUCCESS(f"Checking {count} threads (task group '{group}').")
            )
            return
        self._run_inline(list(pks), group)

    def _run_inline(self, pks: list[int], group: str) -> None:
        from migrations_app import upload

        found: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        for chunk in chunks(pks, sync.CHECK_GROUP_SIZE):
            checked = sync.check(chunk)
            found.update(
                {"up to date": len(checked.up_to_date), "with new messages": len(checked.changed),
                 "diverged": len(checked.diverged), "not checked": len(checked.failed)}
            )  # fmt: skip
            for pk, why in checked.failed:
                self.stderr.write(self.style.WARNING(f"Not checked, thread pk {pk}: {why}"))
            queued = states.queue(checked.changed, "sync", group=group, actor_label="cli",
                                  enqueue=False)  # fmt: skip
            try:
                outcomes.update(upload.migrate_many(queued))
            finally:
                states.hand_to_queue(group)
        summary = ", ".join(f"{count} {what}" for what, count in found.items() if count)
        synced = ", ".join(f"{count} {what}" for what, count in outcomes.items())
        self.stdout.write(self.style.SUCCESS(f"Checked: {summary or 'nothing'}."))
        if outcomes:
            self.stdout.write(f"Synced: {synced}.")

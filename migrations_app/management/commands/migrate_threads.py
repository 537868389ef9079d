import json
import sys
from argparse import ArgumentParser
from collections import Counter
from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError
from django.db.models import QuerySet
from django.utils import timezone

from migrations_app import actions, dashboard, states, upload
from migrations_app.models import Thread, ThreadStatus
from migrations_app.preview import ThreadNotMirrored, preview_thread


class Command(BaseCommand):
    help = (
        "Migrate threads to conversations: by id, by --status, or --all. Without --inline the "
        "threads are queued for the django-q2 workers and the command returns at once."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("thread_ids", nargs="*", help="thread ids (thread_…)")
        parser.add_argument("--status", choices=ThreadStatus.values, help="every thread in it")
        parser.add_argument("--all", action="store_true", help="every thread")
        parser.add_argument(
            "--dry-run", action="store_true", help="print the items and warnings; send nothing"
        )
        parser.add_argument("--inline", action="store_true", help="run here, not in the queue")
        parser.add_argument(
            "--remigrate",
            action="store_true",
            help="migrate succeeded threads again into NEW conversations (old ids kept)",
        )

    def handle(
        self,
        *args: object,
        thread_ids: list[str],
        status: str | None,
        all: bool,
        dry_run: bool,
        inline: bool,
        remigrate: bool,
        **options: object,
    ) -> None:
        threads = self._select(thread_ids, status, all)
        if dry_run:
            return self._dry_run(threads, remigrate)
        action = "remigrate" if remigrate else ("retry" if status == "failed" else "migrate")
        plan = actions.plan(action, threads)
        for reason, count in plan.skipped.items():
            self.stderr.write(self.style.WARNING(f"Skipped {count}: {reason}"))
        if not inline:
            count, group = actions.apply(action, threads, actor_label="cli")
            self.stdout.write(self.style.SUCCESS(f"Queued {count} threads (task group '{group}')."))
            return
        self._run_inline(action, threads, plan.eligible)

    def _run_inline(self, action: str, threads: QuerySet[Thread], total: int) -> None:
        """Chunk by chunk: each chunk is queued for this process (no task) and run here. If the
        run stops early, what it queued and did not start goes to the workers' queue."""
        group = f"{action} inline {timezone.now():%Y-%m-%d %H:%M:%S}"
        outcomes: Counter[str] = Counter()
        progress = self._progress(total)

        def run_chunk(pks: list[int]) -> None:
            outcomes.update(upload.migrate_many(pks, on_done=progress))

        try:
            actions.apply(
                action, threads, actor_label="cli", enqueue=False, on_chunk=run_chunk, group=group
            )
        finally:
            handed = states.hand_to_queue(group)
            if handed:
                self.stderr.write(
                    self.style.WARNING(f"\nStopped early: {handed} threads handed to the queue.")
                )
        self.stdout.write("")
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
        self.stdout.write(self.style.SUCCESS(f"Done: {summary or 'nothing to do'}."))

    def _select(self, thread_ids: list[str], status: str | None, every: bool) -> QuerySet[Thread]:
        if sum(map(bool, (thread_ids, status, every))) != 1:
            raise CommandError("Name thread ids, or --status STATUS, or --all (one of them).")
        if every:
            return Thread.objects.all()
        if status:
            return Thread.objects.filter(status=status)
        threads = Thread.objects.filter(thread_id__in=thread_ids)
        unknown = set(thread_ids) - set(threads.values_list("thread_id", flat=True))
        if unknown:
            raise CommandError(
                f"Unknown thread ids (import them first): {', '.join(sorted(unknown)[:10])}"
            )
        return threads

    def _dry_run(self, threads: QuerySet[Thread], remigrate: bool = False) -> None:
        for thread in threads.iterator(chunk_size=200):
            try:
                preview = preview_thread(thread)
            except ThreadNotMirrored as error:
                self.stdout.write(self.style.WARNING(f"{error}: fetch it first"))
                continue
            self.stdout.write(
                self.style.MIGRATE_HEADING(
                    f"{thread.thread_id}: {len(preview.items)} items in "
                    f"{preview.write_calls} writes + {preview.verify_calls} reads, "
                    f"{len(preview.warnings)} warnings"
                )
            )
            self.stdout.write(json.dumps({"metadata": preview.metadata}, ensure_ascii=False))
            for item in preview.items:
                self.stdout.write(json.dumps(item, ensure_ascii=False))
            for warning in preview.warnings:
                self.stdout.write(self.style.WARNING(f"  warning {warning}"))
        self._estimate(threads if remigrate else threads.exclude(status=ThreadStatus.SUCCEEDED))

    def _estimate(self, threads: QuerySet[Thread]) -> None:
        """How long the selected threads take at the request budget (the dashboard's sum)."""
        result = dashboard.remaining_estimate(threads)
        line = f"Estimate for {result.threads} thread{'s' if result.threads != 1 else ''}: {result}"
        if result.unfetched:
            their, them = ("its", "it") if result.unfetched == 1 else ("their", "them")
            line += (
                f" ({result.unfetched} not fetched yet: {their} size is a guess, and "
                f"{result.source_requests:,} of the requests read {them} from the source)"
            )
        self.stdout.write(self.style.SUCCESS(line + "."))

    def _progress(self, total: int) -> Callable[[int, str], None]:
        done = [0]
        tty = sys.stdout.isatty()

        def report(pk: int, outcome: str) -> None:
            done[0] += 1
            if tty:
                filled = int(30 * done[0] / max(total, 1))
                bar = "#" * filled + "-" * (30 - filled)
                self.stdout.write(f"\r[{bar}] {done[0]}/{total}", ending="")
                self.stdout.flush()
            elif done[0] == total or done[0] % 100 == 0:
                self.stdout.write(f"{done[0]}/{total} threads done")

        return report

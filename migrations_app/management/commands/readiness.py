import csv
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from migrations_app import readiness
from migrations_app.models import Conversation, ThreadStatus
from migrations_app.paging import pk_pages

LISTS = ("exceeds", "retires", "uncounted")


class Command(BaseCommand):
    help = (
        "Continuation readiness of the migrated threads: per model, how many conversations "
        "were counted, how many exceed the model's context (apps must send "
        'truncation="auto"), and which models retire when.'
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--count",
            type=int,
            metavar="N",
            help="first count the tokens of up to N migrated conversations not counted yet "
            "(paced by the destination's request budget)",
        )
        parser.add_argument(
            "--threads",
            choices=LISTS,
            help="instead of the summary, list the threads with this flag as CSV "
            "(thread_id,conversation_id,model,input_tokens,flag)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["count"] is not None:
            if options["count"] < 1:
                raise CommandError("--count must be at least 1.")
            counted = readiness.count_uncounted(options["count"])
            self.stderr.write(
                f"Counted {counted.counted} conversations ({counted.exceeding} exceed the "
                f"context, {counted.failed} could not be counted, {counted.no_model} without "
                "an assistant)." + (f" {counted.stopped}" if counted.stopped else "")
            )
        if options["threads"]:
            self.list_threads(options["threads"])
        else:
            self.summary()

    def summary(self) -> None:
        table = readiness.model_table()
        lines = readiness.report_lines()
        total = sum(line.threads for line in lines)
        write = self.stdout.write
        write(f"Continuation readiness of {total:,} migrated threads")
        write(f"(models table of {table.checked}: migrations_app/data/models.toml)\n")
        header = ("model", "threads", "counted", "exceeding", "largest", "room for", "retires")
        rows = [header]
        for line in lines:
            limits, shutdown = line.limits, line.limits.shutdown if line.limits else None
            rows.append(
                (
                    line.model or "(no assistant)",
                    f"{line.threads:,}",
                    f"{line.counted:,}",
                    f"{line.exceeding:,}",
                    f"{line.largest:,}" if line.largest is not None else "—",
                    f"{limits.input_limit:,}" if limits else "not in the table",
                    shutdown.isoformat() if shutdown else "—",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        write("\nFlags:")
        exceeding = sum(line.exceeding for line in lines)
        if exceeding:
            write(
                f"  exceeds the context: {_threads(exceeding)} — apps must send "
                'truncation="auto" (--threads exceeds lists them)'
            )
        today = timezone.localdate()
        for line in lines:
            shutdown = line.limits.shutdown if line.limits else None
            if shutdown and line.model:
                phrase = readiness.retirement_phrase(line.model, shutdown, today)
                write(f"  {phrase}: {_threads(line.threads)} migrated")
        uncounted = sum(line.threads - line.counted for line in lines if line.model)
        if uncounted:
            write(
                f"  not counted yet: {_threads(uncounted, 'conversation')} (the watchdog's "
                "schedule counts them; --count N counts them now)"
            )
        if (
            not exceeding
            and not uncounted
            and not any(line.limits and line.limits.shutdown for line in lines)
        ):
            write("  none: every migrated conversation can continue as it is.")

    def list_threads(self, flag: str) -> None:
        conversations = Conversation.objects.live().filter(
            verified_at__isnull=False, thread__status=ThreadStatus.SUCCEEDED
        )
        if flag == "exceeds":
            conversations = conversations.filter(exceeds_context=True)
        elif flag == "uncounted":
            conversations = conversations.filter(tokens_counted_at=None)
        else:
            pks = [pk for r in readiness.retirements() for pk in r.assistant_pks]
            conversations = conversations.filter(thread__assistant_id__in=pks)
        writer = csv.writer(self.stdout, lineterminator="\n")
        writer.writerow(["thread_id", "conversation_id", "model", "input_tokens", "flag"])
        fields = (
            "thread__thread_id",
            "conversation_id",
            "thread__assistant__model",
            "input_tokens",
        )
        for page in pk_pages(conversations, *fields):
            for _, thread_id, conversation_id, model, tokens in page:
                writer.writerow([thread_id, conversation_id, model or "", tokens or "", flag])


def _threads(count: int, noun: str = "thread") -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"

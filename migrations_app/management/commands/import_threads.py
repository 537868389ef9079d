from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from migrations_app import intake


class Command(BaseCommand):
    help = (
        "Register thread ids from FILE (a CSV with a thread_id column, or one id per line). "
        "The API cannot list threads, so this is how the console learns which exist."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", help="CSV or text file of thread ids")
        parser.add_argument(
            "--fetch",
            action="store_true",
            help="queue a fetch from the source API for every newly imported thread",
        )

    def handle(self, *args: Any, file: str, fetch: bool, **options: Any) -> None:
        try:
            batch = intake.import_thread_id_file(file)
        except FileNotFoundError:
            raise CommandError(f"{file}: no such file") from None
        except intake.IntakeError as error:
            raise CommandError(f"{file}: {error}") from None
        for entry in batch.errors[:50]:
            self.stderr.write(self.style.WARNING(entry["message"]))
        if batch.invalid_count > 50:
            self.stderr.write(f"… and {batch.invalid_count - 50} more invalid lines")
        self.stdout.write(
            self.style.SUCCESS(
                f"Import batch #{batch.pk}: {batch.new_count} new, "
                f"{batch.duplicate_count} duplicate, {batch.invalid_count} invalid."
            )
        )
        if fetch:
            queued = intake.queue_batch_fetch(batch)
            self.stdout.write(f"Queued {queued} fetches (group 'fetch batch {batch.pk}').")

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from migrations_app import intake


class Command(BaseCommand):
    help = (
        "Load an Assistants export into the mirror, in the console's own layout or the public "
        "exporter's (assistants-thread-export/v1): a directory (threads/<id>.json, optional "
        "assistants.json and manifest.json), a .jsonl file (one thread per line) or a .zip "
        "holding either."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("path")

    def handle(self, *args: Any, path: str, verbosity: int, **options: Any) -> None:
        def progress(batch: intake.ImportBatch) -> None:
            if verbosity > 1:
                self.stdout.write(f"  {batch.new_count + batch.duplicate_count} threads stored")

        try:
            batch = intake.load_export(path, progress=progress)
        except intake.IntakeError as error:
            raise CommandError(str(error)) from None
        for entry in batch.errors[:50]:
            where = entry["file"] + (f":{entry['line']}" if entry.get("line") else "")
            self.stderr.write(self.style.WARNING(f"{where}: {entry['message']}"))
        if batch.invalid_count > 50:
            self.stderr.write(f"… and {batch.invalid_count - 50} more invalid objects")
        for note in batch.warnings[:50]:
            where = note["file"] + (f":{note['line']}" if note.get("line") else "")
            self.stderr.write(f"{where}: changed: {note['message']}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Import batch #{batch.pk}: {batch.new_count} new, {batch.duplicate_count} "
                f"updated, {batch.skipped_count} kept (running or upload started), "
                f"{batch.invalid_count} invalid"
                + (
                    f", {batch.not_exported_count} not in the export (registered as failed)."
                    if batch.not_exported_count
                    else "."
                )
            )
        )

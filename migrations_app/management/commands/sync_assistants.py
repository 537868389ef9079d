from typing import Any

from django.core.management.base import BaseCommand, CommandError

from migrations_app import intake


class Command(BaseCommand):
    help = "Copy every assistant from the source API into the mirror (update, never duplicate)."

    def handle(self, *args: Any, **options: Any) -> None:
        synced = intake.sync_assistants()
        if synced.failure:
            raise CommandError(f"Syncing assistants failed: {synced.failure.message}")
        for assistant_id, problem in synced.rejected:
            self.stderr.write(self.style.WARNING(f"{assistant_id}: not stored: {problem}"))
        self.stdout.write(self.style.SUCCESS(f"Synced {synced.stored} assistants."))

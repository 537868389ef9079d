from django.core.management.base import BaseCommand, CommandError

from migrations_app import intake, openai_client


class Command(BaseCommand):
    help = "Copy every assistant from the source API into the mirror (update, never duplicate)."

    def handle(self, *args, **options):
        try:
            synced = intake.sync_assistants()
        except Exception as error:
            failure = openai_client.classify(error)
            raise CommandError(f"Syncing assistants failed: {failure.message}") from None
        for assistant_id, problem in synced.rejected:
            self.stderr.write(self.style.WARNING(f"{assistant_id}: not stored: {problem}"))
        self.stdout.write(self.style.SUCCESS(f"Synced {synced.stored} assistants."))

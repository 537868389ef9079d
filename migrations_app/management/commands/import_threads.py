from django.core.management.base import BaseCommand, CommandError

from migrations_app import intake
from migrations_app.models import Thread


class Command(BaseCommand):
    help = (
        "Register thread ids from FILE (a CSV with a thread_id column, or one id per line). "
        "The API cannot list threads, so this is how the console learns which exist."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV or text file of thread ids")
        parser.add_argument(
            "--fetch",
            action="store_true",
            help="queue a fetch from the source API for every newly imported thread",
        )

    def handle(self, *args, file, fetch, **options):
        try:
            batch = intake.import_thread_id_file(file)
        except FileNotFoundError:
            raise CommandError(f"{file}: no such file") from None
        except UnicodeDecodeError as error:
            raise CommandError(f"{file}: not UTF-8 text ({error})") from None
        except intake.IntakeError as error:
            raise CommandError(f"{file}: {error}") from None
        for error in batch.errors[:50]:
            self.stderr.write(self.style.WARNING(error["message"]))
        if batch.invalid_count > 50:
            self.stderr.write(f"… and {batch.invalid_count - 50} more invalid lines")
        self.stdout.write(
            self.style.SUCCESS(
                f"Import batch #{batch.pk}: {batch.new_count} new, "
                f"{batch.duplicate_count} duplicate, {batch.invalid_count} invalid."
            )
        )
        if fetch:
            from migrations_app import tasks  # imports the SDK: only when fetching

            ids = Thread.objects.filter(import_batch=batch).values_list("thread_id", flat=True)
            tasks.queue_fetch(ids.iterator(), group=f"fetch batch {batch.pk}")
            self.stdout.write(f"Queued {batch.new_count} fetches (group 'fetch batch {batch.pk}').")

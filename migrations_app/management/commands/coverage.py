import sys
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from migrations_app import coverage
from migrations_app.models import ImportBatch


class Command(BaseCommand):
    help = (
        "Print the coverage of the whole migration, or of one import batch (--batch): the ids "
        "registered from your id lists, the threads the exports hold, the threads migrated and "
        "verified, and their differences. --list KIND prints the thread ids of one difference, "
        "--csv KIND writes it as CSV (to -o FILE, or standard output)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        kinds = list(coverage.kinds())
        parser.add_argument("--batch", type=int, help="an import batch's number")
        parser.add_argument("--list", choices=kinds, metavar="KIND", help=", ".join(kinds))
        parser.add_argument("--csv", choices=kinds, metavar="KIND", help=", ".join(kinds))
        parser.add_argument("-o", "--output", help="the CSV's file (default: standard output)")

    def handle(self, *args: Any, **options: Any) -> None:
        batch = None
        if options["batch"] is not None:
            batch = ImportBatch.objects.filter(pk=options["batch"]).first()
            if batch is None:
                raise CommandError(f"There is no import batch #{options['batch']}.")
        if options["list"]:
            threads = coverage.threads(options["list"], batch).order_by("thread_id")
            for thread_id in threads.values_list("thread_id", flat=True).iterator(5000):
                self.stdout.write(thread_id)
            return
        if options["csv"]:
            lines = coverage.csv_lines(coverage.threads(options["csv"], batch))
            if options["output"]:
                with open(options["output"], "w", encoding="utf-8", newline="") as out:
                    out.writelines(lines)
            else:
                sys.stdout.writelines(lines)
            return
        self.stdout.write(report(coverage.for_batch(batch) if batch else coverage.for_migration(),
                                 batch))  # fmt: skip


def report(figures: coverage.Coverage, batch: ImportBatch | None) -> str:
    """The coverage as the command prints it."""
    scope = f"import batch {batch}" if batch else "the whole migration"
    width = len(f"{max([figures.registered, 1]):,}")
    lines = [
        f"Coverage of {scope}: {figures.registered:,} threads",
        f"  your list (ids you imported): {figures.listed:,} = "
        f"{figures.listed_and_exported:,} in an export + "
        f"{figures.count('unexported'):,} in no export",
        f"  held by an export:            {figures.exported:,} = "
        f"{figures.listed_and_exported:,} in your list + {figures.count('unlisted'):,} not in it",
        f"  named by an export that could not read them: {figures.unread:,}",
        f"  migrated and verified:        {figures.verified:,}",
        "Differences (the threads list's coverage filter, or --list KIND / --csv KIND):",
    ]
    for difference, count in figures.differences:
        lines.append(f"  {count:>{width},}  {difference.label}  [{difference.kind}]")
    return "\n".join(lines)

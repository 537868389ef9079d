from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from migrations_app import mapping
from migrations_app.models import Thread, ThreadStatus


class Command(BaseCommand):
    help = (
        "Write the thread → conversation mapping as CSV "
        "(thread_id,conversation_id,status,items,warnings). No API can rebuild it: keep a copy."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("-o", "--output", help="file to write (default: standard output)")
        parser.add_argument("--status", choices=ThreadStatus.values, help="only this status")

    def handle(self, *args: Any, output: str | None, status: str | None, **options: Any) -> None:
        threads = Thread.objects.all()
        if status:
            threads = threads.filter(status=status)
        if output:
            with open(output, "w", encoding="utf-8", newline="") as handle:
                count = mapping.write_mapping(handle, threads)
            self.stderr.write(self.style.SUCCESS(f"Wrote {count} threads to {output}."))
        else:
            mapping.write_mapping(self.stdout, threads)

"""django-q2's `qcluster`, with the console's sentinel: it stops within seconds however a
supervisor stops it, its workers handing their threads back (migrations_app/workers.py)."""

from typing import Any

from django_q.management.commands import qcluster

from migrations_app import workers


class Command(qcluster.Command):
    help = (
        "Starts the console's django-q2 workers. SIGTERM (to the process or its group) or SIGINT "
        "stops them within seconds; threads in flight go back to the queue."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        workers.install()
        super().handle(*args, **options)

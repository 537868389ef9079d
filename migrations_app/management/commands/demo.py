import os
import signal
import subprocess
import sys
import tempfile
import time
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from migrations_app import connections, intake
from migrations_app.models import ImportBatch
from migrations_app.sandbox import SandboxServer, generate_dataset, seeded_state
from migrations_app.sandbox.exporter import V1Export, file_ids, write_own_zip, write_v1_zip

DEMO_USER = "demo"
DEMO_PASSWORD = "demo-console"
# An id the sandbox does not know, so the demo shows a clear not_found failure too.
UNKNOWN_THREAD = "thread_DemoUnknownThread0000000"
# The demo's two exports, one in each layout the console reads. Each holds some of the sandbox's
# threads (then not fetched: the export has them) and EXPORT_ONLY_THREADS // 2 threads no id
# list names; the v1 export also names one thread its exporter could not read, lost one run's
# steps and one file's metadata, so every coverage figure and failure shows.
OWN_EXPORT, V1_EXPORT = "demo-export-own-layout.zip", "demo-export-v1.zip"
EXPORT_ONLY_THREADS = 4
UNREAD_THREAD = "thread_DemoNotExported000000000"


class Command(BaseCommand):
    help = (
        "Start the whole console on the embedded default: migrate, a demo login, the sandbox "
        "with demo data, demo thread ids imported and fetched, a django-q2 cluster and the web "
        "server on 127.0.0.1:8000. Ctrl-C stops everything."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--threads", type=int, default=200)
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, threads: int, port: int, **options: Any) -> None:
        if not (connections.source().is_sandbox and connections.destination().is_sandbox):
            raise CommandError(
                "The demo runs on the sandbox only: unset OPENAI_API_KEY and ASSISTANTS_API_KEY, "
                "and OPENAI_AUTH / ASSISTANTS_AUTH if they are entra."
            )
        call_command("migrate", interactive=False, verbosity=0)
        self._demo_user()
        state = seeded_state(seed=1, thread_count=threads)
        sandbox = SandboxServer(port=settings.SANDBOX_PORT, state=state).start()
        self._sync_assistants()
        self._load_demo_exports(threads)
        self._import_demo_ids(list(state.threads))
        # Each child in a process group of its own: Ctrl-C in the terminal reaches this process
        # alone, which stops them in order, instead of racing them to the exit (and reporting
        # the first to go as a crash).
        commands = {
            "the worker (qcluster)": ["qcluster"],
            "the web server (runserver)": ["runserver", f"127.0.0.1:{port}", "--noreload"],
        }
        children = {
            name: subprocess.Popen([sys.executable, "manage.py", *args], process_group=0)
            for name, args in commands.items()
        }
        self.stdout.write(
            self.style.SUCCESS(
                f"\nConsole: http://127.0.0.1:{port}/admin/  login {DEMO_USER} / {DEMO_PASSWORD}\n"
                f"Sandbox API: {sandbox.url} ({len(state.threads)} demo threads)\n"
                "Ctrl-C stops the web server, the worker and the sandbox.\n"
            )
        )
        # Ctrl-C (SIGINT) or SIGTERM: a flag the loop reads (a handler that took a lock could
        # deadlock on the one the interrupted loop holds).
        asked: list[int] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda signum, frame: asked.append(signum))
        try:
            while not asked:
                ended = [name for name, child in children.items() if child.poll() is not None]
                if ended:
                    status = children[ended[0]].returncode
                    self.stderr.write(
                        f"{ended[0].capitalize()} stopped by itself (exit status {status}); "
                        "shutting down."
                    )
                    break
                time.sleep(0.25)
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.terminate()
            for child in children.values():
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
            sandbox.stop()
            self.stdout.write("Stopped.")

    def _demo_user(self) -> None:
        user, _ = get_user_model().objects.get_or_create(username=DEMO_USER)
        user.is_staff = user.is_superuser = True
        user.set_password(DEMO_PASSWORD)
        user.save()

    def _sync_assistants(self) -> None:
        """The sandbox's assistants first, so every fetched thread shows its assistant."""
        synced = intake.sync_assistants()
        if synced.failure:
            raise CommandError(f"Syncing the demo assistants failed: {synced.failure.message}")
        self.stdout.write(f"Synced {synced.stored} demo assistants from the sandbox.")

    def _load_demo_exports(self, threads: int) -> None:
        """One export in each layout, loaded before the id list: the list's threads they hold
        are mirrored already and not fetched."""
        if ImportBatch.objects.filter(filename__in=[OWN_EXPORT, V1_EXPORT]).exists():
            return
        assistants, sandbox_threads = generate_dataset(seed=1, thread_count=threads)
        more_assistants, others = generate_dataset(seed=2, thread_count=EXPORT_ONLY_THREADS)
        listed, unlisted = list(sandbox_threads), list(others)
        share = max(1, min(10, threads // 10))
        half = EXPORT_ONLY_THREADS // 2
        v1_bundles = [*listed[share : 2 * share], *unlisted[half:]]
        with_steps = next((b for b in v1_bundles if b["run_steps"]), None)
        with_files = next((b for b in v1_bundles if file_ids(b)), None)
        v1 = V1Export(
            v1_bundles,
            [*assistants, *more_assistants],
            failed={UNREAD_THREAD: "not_found_or_deleted"},
            lost_steps={with_steps["thread"]["id"]: [with_steps["run_steps"][0]["run_id"]]}
            if with_steps
            else {},
            lost_files={with_files["thread"]["id"]: file_ids(with_files)[:1]} if with_files else {},
        )
        with tempfile.TemporaryDirectory() as folder:
            own = write_own_zip(
                Path(folder) / OWN_EXPORT, [*listed[:share], *unlisted[:half]], more_assistants
            )
            for path in (own, write_v1_zip(Path(folder) / V1_EXPORT, v1)):
                batch = intake.load_export(path)
                self.stdout.write(
                    f"Loaded {path.name}: {batch.new_count} threads"
                    + (
                        f", {batch.not_exported_count} not in the export"
                        if batch.not_exported_count
                        else ""
                    )
                    + "."
                )

    def _import_demo_ids(self, thread_ids: list[str]) -> None:
        if ImportBatch.objects.filter(filename="demo-thread-ids.csv").exists():
            return
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "demo-thread-ids.csv")
            with open(path, "w") as handle:
                handle.write("thread_id\n" + "\n".join([*thread_ids, UNKNOWN_THREAD]) + "\n")
            batch = intake.import_thread_id_file(path)
        intake.queue_batch_fetch(batch)
        self.stdout.write(f"Imported {batch.new_count} demo thread ids and queued their fetch.")

"""What limits `import_threads`: where 100,000 ids spend their time, side by side in one process.

    python -m tests.postgres python tests/benchmarks/bench_import_floor.py

Prints the time to start Django, to read and check the ids, and to insert them in one
transaction, as the command does (a COPY per chunk of new ids), into the thread table as it is;
beside it INSERT … ON CONFLICT (what a chunk holding registered ids falls back to); then the
command's way into the same table with only its primary key and unique thread_id index, and also
without the counting triggers. The indexes and triggers are put back at the end. Not part of
`make bench`.
"""

import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
os.environ.setdefault("DEBUG", "true")

started = time.perf_counter()
import django  # noqa: E402

django.setup()
SETUP_SECONDS = time.perf_counter() - started

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from migrations_app import bulk  # noqa: E402
from migrations_app.intake.ids import ID_CHUNK, parse_thread_ids, utf8_lines  # noqa: E402
from migrations_app.models import ImportBatch, Thread  # noqa: E402
from migrations_app.paging import chunks  # noqa: E402
from migrations_app.sandbox.data import IdMaker  # noqa: E402

IDS = 100_000
RUNS = int(os.environ.get("BENCH_IMPORT_RUNS", "5"))
TABLE = Thread._meta.db_table
KEPT_INDEXES = (f"{TABLE}_pkey", f"{TABLE}_thread_id_key")


def execute(sql: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall() if cursor.description else []


def timed_runs(insert: Callable[[list[str]], None], thread_ids: list[str]) -> list[float]:
    seconds = []
    for _ in range(RUNS):
        execute(f"TRUNCATE {TABLE} CASCADE")
        start = time.perf_counter()
        with transaction.atomic():
            insert(thread_ids)
        seconds.append(time.perf_counter() - start)
    return seconds


def insert_as_the_command_does(thread_ids: list[str]) -> None:
    for chunk in chunks(thread_ids, ID_CHUNK):
        assert bulk.insert_new_thread_ids(Thread, chunk, None) == len(chunk)


def insert_on_conflict(thread_ids: list[str]) -> None:
    for chunk in chunks(thread_ids, ID_CHUNK):
        bulk.insert_thread_ids_skipping_registered(Thread, chunk, None)


def report(label: str, seconds: list[float]) -> None:
    runs = " ".join(f"{s:.2f}" for s in seconds)
    print(f"  {label}: median {statistics.median(seconds):.2f} s (runs: {runs})", flush=True)


def main() -> None:
    if connection.vendor != "postgresql":
        sys.exit("bench_import_floor: run it under `python -m tests.postgres`")
    call_command("migrate", verbosity=0)
    print(f"{IDS:,} ids, {RUNS} runs each; load average {os.getloadavg()[0]:.2f} at start")
    print(f"  starting Django (django.setup): {SETUP_SECONDS:.2f} s")
    with tempfile.NamedTemporaryFile("w", suffix=".csv") as handle:
        make_id = IdMaker(random.Random(1))
        handle.write("thread_id\n" + "".join(make_id("thread_") + "\n" for _ in range(IDS)))
        handle.flush()
        start = time.process_time()
        with open(handle.name, "rb") as lines:
            thread_ids = list(parse_thread_ids(utf8_lines(lines), ImportBatch()))
        print(f"  reading and checking the ids: {time.process_time() - start:.2f} CPU-s")
    report(
        "the command's COPY, the thread table as it is",
        timed_runs(insert_as_the_command_does, thread_ids),
    )
    report("INSERT … ON CONFLICT, the same table", timed_runs(insert_on_conflict, thread_ids))
    secondary = execute(
        f"SELECT indexname, indexdef FROM pg_indexes WHERE tablename = '{TABLE}' "
        f"AND indexname NOT IN {KEPT_INDEXES}"
    )
    try:
        for name, _ in secondary:
            execute(f'DROP INDEX "{name}"')
        report(
            "the command's COPY, only the primary key and the unique thread_id index",
            timed_runs(insert_as_the_command_does, thread_ids),
        )
        execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER USER")
        report(
            "the same, without the counting triggers",
            timed_runs(insert_as_the_command_does, thread_ids),
        )
    finally:
        execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER USER")
        for _, definition in secondary:
            execute(definition.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1))
        execute(f"TRUNCATE {TABLE} CASCADE")


if __name__ == "__main__":
    main()

"""Intake benchmark: 100,000 thread ids from CSV, and an export of 5,000 threads × 25 messages.

    make bench            (or: python -m tests.postgres python tests/benchmarks/bench_intake.py)

Each step runs as its own `manage.py` process under `/usr/bin/time -v`, so the figures are the
command's whole wall time and peak resident memory, as a user would see them.
Targets (issue 2): ids ≥ 50,000/s; export ≥ 500 threads/s with peak RSS < 300 MB.
"""

import json
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from migrations_app.sandbox.data import IdMaker, generate_assistants, generate_thread  # noqa: E402
from tests.benchmarks import common  # noqa: E402

IDS = 100_000
THREADS = 5_000
MESSAGES = 25


def timed(*args):
    result = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, "manage.py", *args],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", result.stderr)
    hours, minutes, seconds = wall.groups()
    seconds = int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    rss_mb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)[1]) / 1024
    return seconds, rss_mb, result.stdout.strip()


def write_ids(path):
    rng = random.Random(1)
    ids = IdMaker(rng)
    with open(path, "w") as handle:
        handle.write("thread_id\n")
        for _ in range(IDS):
            handle.write(ids("thread_") + "\n")


def write_export(path):
    rng = random.Random(2)
    ids = IdMaker(rng)
    assistants = generate_assistants(rng, ids)
    with open(path, "w") as handle:
        for index in range(THREADS):
            bundle = generate_thread(rng, ids, assistants, index, message_count=MESSAGES)
            handle.write(json.dumps(bundle) + "\n")


def main():
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from migrations_app.models import Thread; Thread.objects.all().delete()"],
        cwd=ROOT, check=True,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        ids_path, export_path = Path(folder) / "ids.csv", Path(folder) / "export.jsonl"
        write_ids(ids_path)
        write_export(export_path)
        size_mb = export_path.stat().st_size / 1e6
        seconds, rss, out = timed("import_threads", str(ids_path))
        print(f"import_threads: {IDS:,} ids in {seconds:.2f} s = {IDS / seconds:,.0f} ids/s, "
              f"peak RSS {rss:.0f} MB  [{out}]")  # fmt: skip
        common.row(
            f"import_threads, {IDS:,} ids (whole command)",
            "≥ 50,000 ids/s",
            f"{IDS / seconds:,.0f} ids/s",
            IDS / seconds >= 50_000,
        )
        seconds, rss, out = timed("load_export", str(export_path))
        print(f"load_export: {THREADS:,} threads × {MESSAGES} messages ({size_mb:.0f} MB jsonl) "
              f"in {seconds:.2f} s = {THREADS / seconds:,.0f} threads/s, peak RSS {rss:.0f} MB"
              f"  [{out}]")  # fmt: skip
        common.row(
            f"load_export, {THREADS:,} threads × {MESSAGES} messages (whole command)",
            "≥ 500 threads/s, < 300 MB",
            f"{THREADS / seconds:,.0f} threads/s, {rss:.0f} MB",
            THREADS / seconds >= 500 and rss < 300,
        )


if __name__ == "__main__":
    main()

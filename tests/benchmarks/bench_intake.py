"""Intake benchmark: 100,000 thread ids from CSV, and an export of 5,000 threads × 25 messages in
each layout the console reads, side by side in one run: the console's own (a .jsonl, and a .zip
of its directory) and assistants-thread-export/v1 (a .zip with one top-level folder, written by
the sandbox's exporter: the same threads, their runs' steps nested, their files' metadata).

    make bench            (or: python -m tests.postgres python tests/benchmarks/bench_intake.py)

Each step runs as its own `manage.py` process under `/usr/bin/time -v`, so the figures are the
command's whole wall time and peak resident memory, as a user would see them. The .jsonl loads
beside the 100,000 ids (as before); each .zip loads into an empty thread table.
Targets (issue 2): ids ≥ 50,000/s; export ≥ 500 threads/s with peak RSS < 300 MB.
"""

import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from migrations_app.sandbox.data import IdMaker, generate_assistants, generate_thread  # noqa: E402
from migrations_app.sandbox.exporter import V1Export, write_own_zip, write_v1_zip  # noqa: E402
from tests.benchmarks import common  # noqa: E402

IDS = 100_000
THREADS = 5_000
MESSAGES = 25
LAYOUT_RUNS = 3


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


def dataset():
    rng = random.Random(2)
    ids = IdMaker(rng)
    assistants = generate_assistants(rng, ids)
    bundles = [generate_thread(rng, ids, assistants, index, message_count=MESSAGES)
               for index in range(THREADS)]  # fmt: skip
    return assistants, bundles


def write_export(path, bundles):
    with open(path, "w") as handle:
        for bundle in bundles:
            handle.write(json.dumps(bundle) + "\n")


def empty():
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from migrations_app.models import Thread; Thread.objects.all().delete()"],
        cwd=ROOT, check=True,
    )  # fmt: skip


def load(path, label):
    """load_export of `path` into an empty thread table: (threads/s, peak RSS MB)."""
    empty()
    seconds, rss, out = timed("load_export", str(path))
    size_mb = path.stat().st_size / 1e6
    print(f"load_export, {label}: {THREADS:,} threads × {MESSAGES} messages ({size_mb:.0f} MB) "
          f"in {seconds:.2f} s = {THREADS / seconds:,.0f} threads/s, peak RSS {rss:.0f} MB"
          f"  [{out}]")  # fmt: skip
    return THREADS / seconds, rss


def main():
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    empty()
    with tempfile.TemporaryDirectory() as folder:
        ids_path, export_path = Path(folder) / "ids.csv", Path(folder) / "export.jsonl"
        write_ids(ids_path)
        assistants, bundles = dataset()
        write_export(export_path, bundles)
        own_zip = write_own_zip(Path(folder) / "own.zip", bundles, assistants)
        v1_zip = write_v1_zip(Path(folder) / "v1.zip", V1Export(bundles, assistants))
        del bundles
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
        # Side by side, alternating, so both layouts meet the same load on the machine.
        runs: dict[str, list[tuple[float, float]]] = {"own": [], "v1": []}
        for _ in range(LAYOUT_RUNS):
            runs["own"].append(load(own_zip, "own layout, .zip of its directory"))
            runs["v1"].append(load(v1_zip, "assistants-thread-export/v1, .zip with a top folder"))
        (own_rate, own_rss), (v1_rate, v1_rss) = (
            (statistics.median(r for r, _ in runs[k]), max(m for _, m in runs[k]))
            for k in ("own", "v1")
        )
        print(f"median of {LAYOUT_RUNS}: v1 {v1_rate:,.0f} threads/s (peak {v1_rss:.0f} MB), own "
              f"{own_rate:,.0f} threads/s (peak {own_rss:.0f} MB): v1 / own = "
              f"{v1_rate / own_rate:.2f}")  # fmt: skip
        common.row(
            f"load_export, {THREADS:,}-thread v1 zip beside our own layout's zip (same threads, "
            f"median of {LAYOUT_RUNS} alternating)",
            "≥ 500 threads/s, < 300 MB",
            f"v1 {v1_rate:,.0f} threads/s, {v1_rss:.0f} MB; "
            f"own {own_rate:,.0f} threads/s, {own_rss:.0f} MB",
            v1_rate >= 500 and v1_rss < 300,
        )
        empty()


if __name__ == "__main__":
    main()

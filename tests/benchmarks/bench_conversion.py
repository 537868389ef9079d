"""Conversion benchmark: the demo data set (1,000 threads from the generator) converted in-process.

    python tests/benchmarks/bench_conversion.py

Target (issue 3): ≥ 20,000 messages/s. Pure Python; no database, no network.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from migrations_app.conversion import convert_thread
from migrations_app.sandbox.data import generate_dataset

THREADS = 1000
ROUNDS = 5


def main():
    _, bundles = generate_dataset(seed=1, thread_count=THREADS)
    bundles = list(bundles)
    messages = sum(len(b["messages"]) for b in bundles)
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        items = 0
        for bundle in bundles:
            items += len(convert_thread(bundle["thread"], bundle["messages"],
                                        bundle["run_steps"]).items)  # fmt: skip
        best = min(best, time.perf_counter() - started)
    print(f"conversion: {THREADS:,} demo threads, {messages:,} messages → {items:,} items; "
          f"best of {ROUNDS}: {best:.3f} s = {messages / best:,.0f} messages/s")  # fmt: skip


if __name__ == "__main__":
    main()

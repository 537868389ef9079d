"""Sync pass benchmark: a pass over migrated threads with nothing new at the source costs one
request per thread (their messages after the last migrated one), at the pace of the source's
budget.

    make bench   (or: python -m tests.postgres python tests/benchmarks/bench_sync.py)

The sandbox (its own process, 50 ms) serves BENCH_SYNC_THREADS demo threads (default 10,000);
the mirror holds them, marked migrated up to their last message by the benchmark itself (the
upload is not what is measured, and a thread with nothing new never reaches its conversation).
The cluster runs with ASSISTANTS_REQUESTS_PER_MINUTE = BENCH_SYNC_BUDGET (default 10,000);
`sync_threads --all` queues the checks, as staff would, and the pass ends when every thread's
`synced_at` has moved on.

Prints the requests the sandbox answered per thread, by route (target: 1, a messages listing);
the pass's rate in its steady part (after BENCH_SYNC_WARMUP seconds, default 10) against the
budget, and the time 100,000 threads take at that rate (extrapolated: a pass over 100,000 is
ten minutes of a benchmark run); the whole pass's time, start-up included; the CPU of the
cluster, the sandbox and PostgreSQL, and the cluster's CPU per 1,000 threads checked.
Targets (issue 22): 1 request per unchanged thread; 100,000 threads in about ten minutes at
10,000 requests a minute.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-key")  # tasks are signed: shared with the cluster

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db.models import OuterRef, Subquery, Value  # noqa: E402
from django.db.models.functions import Coalesce  # noqa: E402

from migrations_app import intake  # noqa: E402
from migrations_app.models import Message, RateLimit, Thread, ThreadStatus  # noqa: E402
from migrations_app.sandbox import generate_dataset  # noqa: E402
from tests.benchmarks import common  # noqa: E402

THREADS = int(os.environ.get("BENCH_SYNC_THREADS", 10_000))
BUDGET = int(os.environ.get("BENCH_SYNC_BUDGET", 10_000))
WARMUP = float(os.environ.get("BENCH_SYNC_WARMUP", 10))
LATENCY_MS = 50
PORT = int(os.environ.get("BENCH_PORT", 8769))


def load() -> None:
    """The threads mirrored and marked migrated, synced up to their last message."""
    Thread.objects.all().delete()
    RateLimit.objects.all().delete()
    bundles = generate_dataset(seed=1, thread_count=THREADS)[1]  # what run_sandbox serves
    batch = []
    for bundle in bundles:
        batch.append(bundle)
        if len(batch) == 1000:
            intake.store_bundles(batch)
            batch = []
    if batch:
        intake.store_bundles(batch)
    last = Message.objects.filter(thread=OuterRef("pk")).order_by("-position")
    Thread.objects.update(
        status=ThreadStatus.SUCCEEDED,
        synced_message_id=Coalesce(Subquery(last.values("message_id")[:1]), Value("")),
        synced_at=None,
    )


def checked() -> int:
    return Thread.objects.filter(synced_at__isnull=False).count()


def requests(port: int) -> dict[str, int]:
    return common.sandbox_state(port)["request_counts"]


def usage(cluster: int, sandbox: int) -> dict[str, float]:
    return {
        "cluster": common.session_usage(cluster)[0],
        "sandbox": common.session_usage(sandbox)[0],
        "postgres": common.postgres_cpu(),
    }


def main() -> None:
    call_command("migrate", verbosity=0)
    print(
        f"sync pass: {THREADS:,} migrated threads with nothing new, source budget "
        f"{BUDGET:,}/min, {LATENCY_MS} ms; {common.machine()}",
        flush=True,
    )
    load()
    without_messages = Thread.objects.filter(synced_message_id="").count()
    server = common.sandbox(PORT, THREADS, LATENCY_MS)
    env = {"ASSISTANTS_REQUESTS_PER_MINUTE": BUDGET, "Q_WORKERS": 2}
    workers = common.cluster(PORT, "bench-sync", **env)
    try:
        time.sleep(3)  # the cluster starts (not timed, as in the throughput benchmark)
        cpu = usage(workers.pid, server.pid)
        started = time.monotonic()
        with open(os.devnull, "w") as quiet:
            call_command("sync_threads", all=True, stdout=quiet)
        window: list[tuple[float, int]] = []
        with common.profiled(workers, "sync-pass"):
            while (done := checked()) < THREADS:
                now = time.monotonic()
                if now - started >= WARMUP:
                    window.append((now, sum(requests(PORT).values())))
                if now - started > 3 * 60 * THREADS / BUDGET + 120:
                    print(f"  WARNING: the pass stopped at {done} of {THREADS} threads")
                    break
                time.sleep(0.5)
        elapsed = time.monotonic() - started
        cpu = {name: used - cpu[name] for name, used in usage(workers.pid, server.pid).items()}
        answered = requests(PORT)
    finally:
        common.stop_group(workers)
        common.stop_group(server)
    per_thread = sum(answered.values()) / THREADS
    routes = ", ".join(f"{route} {count / THREADS:.3f}" for route, count in answered.items())
    (first, sent_first), (last, sent_last) = window[0], window[-1]
    rate = (sent_last - sent_first) / (last - first) * 60 if last > first else 0.0
    hundred_thousand = 100_000 / rate if rate else float("inf")
    print(
        f"  {THREADS:,} threads checked in {elapsed:.0f} s, start-up included "
        f"({without_messages} had no message to list after: read from the start); "
        f"{per_thread:.3f} requests per thread ({routes})",
        flush=True,
    )
    print(
        f"  steady rate {rate:,.0f} requests/min = {rate / BUDGET:.1%} of the budget; 100,000 "
        f"threads at that rate: {hundred_thousand:.1f} min (extrapolated); CPU-s per s: cluster "
        f"{cpu['cluster'] / elapsed:.2f}, sandbox {cpu['sandbox'] / elapsed:.2f}, PostgreSQL "
        f"{cpu['postgres'] / elapsed:.2f}; cluster CPU {cpu['cluster'] / THREADS * 1000:.1f} s "
        "per 1,000 threads checked",
        flush=True,
    )
    common.row(
        "sync pass, requests per unchanged thread",
        "1",
        f"{per_thread:.3f}",
        per_thread <= 1.0005,
    )
    common.row(
        f"sync pass at {BUDGET:,}/min: 100,000 threads",
        "about 10 min",
        f"{hundred_thousand:.1f} min ({rate / BUDGET:.1%} of the budget; "
        f"{THREADS:,} threads measured, extrapolated)",
        hundred_thousand <= 100_000 / BUDGET * 1.1,
    )


if __name__ == "__main__":
    main()

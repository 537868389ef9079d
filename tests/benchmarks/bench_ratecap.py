"""Rate-cap benchmark: the sandbox enforces a requests-per-minute cap (a rolling minute, as the
API counts) and the console's cluster is given the same budget (API_REQUESTS_PER_MINUTE).

    make bench   (or: python -m tests.postgres python tests/benchmarks/bench_ratecap.py)

Threads come from an export (the mirror is loaded first), the sandbox answers after 50 ms. For
each cap the cluster runs a warm-up, then the steady part is measured: requests the sandbox
accepted per minute as a share of the cap, and the share of all requests it answered 429.
Targets (issue 10): ≥ 90 % of 1,200, 3,000 and 10,000 per minute, < 1 % answered 429; (issue 22)
≤ 6 CPU-s of the cluster per 1,000 threads at 10,000 per minute. The 30,000 cap has no target:
it shows the share this 2-core machine fills with the sandbox on it. Also printed: CPU seconds
per second of the cluster, the sandbox and PostgreSQL in the window (what limits the rate).

Knobs: BENCH_CAPS (default 1200,3000,10000), BENCH_RATECAP_WARMUP (s, default 20),
BENCH_RATECAP_SECONDS (the measured window, default 60), BENCH_WORKERS (default 2),
BENCH_IN_FLIGHT (threads in flight per worker; default the setting's).
"""

from __future__ import annotations

import math
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

from migrations_app import actions, intake  # noqa: E402
from migrations_app.models import Conversation, RateLimit, Thread, ThreadStatus  # noqa: E402
from migrations_app.sandbox import generate_dataset  # noqa: E402
from tests.benchmarks import common  # noqa: E402

CAPS = [int(cap) for cap in os.environ.get("BENCH_CAPS", "1200,3000,10000,30000").split(",")]
WARMUP = float(os.environ.get("BENCH_RATECAP_WARMUP", 20))
WINDOW = float(os.environ.get("BENCH_RATECAP_SECONDS", 60))
WORKERS = int(os.environ.get("BENCH_WORKERS", 2))
IN_FLIGHT = os.environ.get("BENCH_IN_FLIGHT", "")
LATENCY_MS = 50
PORT = int(os.environ.get("BENCH_PORT", 8766))
# The cap with targets for the share and the CPU; higher caps are measured without one.
TARGET_CAP = 10_000


def requests_of(bundle: dict) -> int:
    """Requests a thread costs at least: create, one write per 20 items, one read per 100."""
    items = len(bundle["messages"]) + 2 * len(bundle["run_steps"])
    return 1 + math.ceil(items / 20) + max(1, math.ceil(items / 100))


def threads_for(requests: int) -> list[dict]:
    """The first threads of the demo data set (what run_sandbox serves) that need `requests`."""
    chosen, total = [], 0
    for bundle in generate_dataset(seed=1, thread_count=100_000)[1]:
        chosen.append(bundle)
        total += requests_of(bundle)
        if total >= requests:
            return chosen
    return chosen


def load(bundles: list[dict]) -> None:
    Conversation.objects.all().delete()
    Thread.objects.all().delete()
    RateLimit.objects.all().delete()
    for start in range(0, len(bundles), 500):
        intake.store_bundles(bundles[start : start + 500])
    actions.apply("migrate", Thread.objects.all(), actor_label="bench")


def sample(port: int, cluster_pid: int, sandbox_pid: int) -> dict[str, float]:
    state = common.sandbox_state(port)
    faults = state["fault_counts"]
    return {
        "time": time.monotonic(),
        "requests": sum(state["request_counts"].values()),
        "limited": faults.get("rpm_cap", 0) + faults.get("rate_limit", 0),
        "cluster_cpu": common.session_usage(cluster_pid)[0],
        "sandbox_cpu": common.session_usage(sandbox_pid)[0],
        "postgres_cpu": common.postgres_cpu(),
        "succeeded": Thread.objects.filter(status=ThreadStatus.SUCCEEDED).count(),
    }


def run(cap: int) -> None:
    needed = cap / 60 * (WARMUP + WINDOW + 30) * 1.2
    bundles = threads_for(int(needed))
    load(bundles)
    server = common.sandbox(PORT, len(bundles), LATENCY_MS, rpm_cap=cap)
    env = {"Q_WORKERS": WORKERS, "API_REQUESTS_PER_MINUTE": cap}
    if IN_FLIGHT:
        env["MIGRATION_THREADS_PER_WORKER"] = IN_FLIGHT
    workers = common.cluster(PORT, f"bench-ratecap-{cap}", **env)
    try:
        while sum(common.sandbox_state(PORT)["request_counts"].values()) == 0:
            time.sleep(0.2)
        time.sleep(WARMUP)
        with common.profiled(workers, f"ratecap-{cap}"):
            first = sample(PORT, workers.pid, server.pid)
            time.sleep(WINDOW)
            last = sample(PORT, workers.pid, server.pid)
        left = Thread.objects.filter(status__in=[ThreadStatus.QUEUED, ThreadStatus.RUNNING]).count()
    finally:
        common.stop_group(workers)
        common.stop_group(server)
    seconds = last["time"] - first["time"]
    sent = last["requests"] - first["requests"]
    limited = last["limited"] - first["limited"]
    per_minute = (sent - limited) / seconds * 60
    share, limited_share = per_minute / cap, limited / max(sent, 1)
    cpu = {
        name: (last[f"{name}_cpu"] - first[f"{name}_cpu"]) / seconds
        for name in ("cluster", "sandbox", "postgres")
    }
    finished = last["succeeded"] - first["succeeded"]
    cpu_per_1000 = (last["cluster_cpu"] - first["cluster_cpu"]) / max(finished, 1) * 1000
    print(
        f"cap {cap:,}/min: {per_minute:,.0f} accepted/min over {seconds:.0f} s "
        f"= {share:.1%} of the cap; {limited} of {sent} requests answered 429 "
        f"({limited_share:.2%}); CPU-s per s: cluster {cpu['cluster']:.2f}, sandbox "
        f"{cpu['sandbox']:.2f}, PostgreSQL {cpu['postgres']:.2f} (of {os.cpu_count()} cores); "
        f"{len(bundles)} threads loaded, {left} still queued or running at the end; "
        f"{finished} threads verified in the window: cluster CPU {cpu_per_1000:.1f} s per 1,000",
        flush=True,
    )
    if left == 0:
        print("  WARNING: the threads ran out before the window closed; the rate is too low")
    busy = sum(cpu.values())
    common.row(
        f"share of a {cap:,}/min cap sustained, 429s",
        "≥ 90 %, < 1 % 429" if cap <= TARGET_CAP else "none: what this machine fills",
        f"{share:.1%}, {limited_share:.2%} 429"
        + ("" if cap <= TARGET_CAP else f"; {busy:.2f} of {os.cpu_count()} cores busy"),
        share >= 0.9 and limited_share < 0.01 if cap <= TARGET_CAP else None,
    )
    if cap == TARGET_CAP:
        common.row(
            f"cluster CPU per 1,000 threads, upload phase, steady at {cap:,}/min",
            "≤ 6 CPU-s",
            f"{cpu_per_1000:.1f} CPU-s",
            cpu_per_1000 <= 6,
        )


def main() -> None:
    call_command("migrate", verbosity=0)
    print(
        f"rate cap: {WORKERS} workers, 50 ms latency, warm-up {WARMUP:.0f} s, window "
        f"{WINDOW:.0f} s; {common.machine()}",
        flush=True,
    )
    for cap in CAPS:
        run(cap)


if __name__ == "__main__":
    main()

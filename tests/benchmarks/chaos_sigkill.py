"""Chaos run: a worker cluster SIGKILLed again and again (issue 20, finding 5). Two real clusters
on PostgreSQL migrate threads fetched from the sandbox (which injects the usual faults); one is
killed with SIGKILL and started again every few seconds for a while, leaving tasks it had taken
from the queue and leases it held. Prints how long the whole run took to settle, and what the
sandbox holds against what the console says.

    python -m tests.postgres python tests/benchmarks/chaos_sigkill.py

Knobs: CHAOS_THREADS (200), CHAOS_LEASE (20 s), CHAOS_KILL_EVERY (3 s), CHAOS_KILLS (20).
Runs on the engine of any release with the same commands (import_threads, qcluster), so the
same script measures before and after.
"""

import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
os.environ.setdefault("SECRET_KEY", "chaos-only-key")  # tasks are signed: shared with clusters

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from migrations_app import actions  # noqa: E402
from migrations_app.models import Thread, ThreadStatus  # noqa: E402
from migrations_app.sandbox import SandboxServer, seeded_state  # noqa: E402
from tests.benchmarks.chaos_sigstop import audit, start_afresh, start_cluster  # noqa: E402
from tests.cluster import CHAOS_FAULTS  # noqa: E402

THREADS = int(os.environ.get("CHAOS_THREADS", 200))
LEASE = int(os.environ.get("CHAOS_LEASE", 20))
KILL_EVERY = float(os.environ.get("CHAOS_KILL_EVERY", 3))
KILLS = int(os.environ.get("CHAOS_KILLS", 20))
OPEN = [ThreadStatus.PENDING, ThreadStatus.QUEUED, ThreadStatus.RUNNING]


def kill(cluster):
    os.killpg(cluster.pid, signal.SIGKILL)
    cluster.wait()


def settled():
    return not Thread.objects.filter(status__in=OPEN).exists()


def main():
    start_afresh()
    with SandboxServer(state=seeded_state(seed=13, thread_count=THREADS)) as sandbox:
        sandbox.state.configure_faults(**CHAOS_FAULTS, retry_after_seconds=1, latency_ms=30, seed=9)
        ids = Path("/tmp/chaos-kill-ids.txt")
        ids.write_text("\n".join(sandbox.state.threads))
        call_command("import_threads", str(ids), verbosity=0)
        actions.apply("migrate", Thread.objects.all(), actor_label="chaos")
        started = time.monotonic()
        steady = start_cluster(sandbox, "steady")
        killed = start_cluster(sandbox, "killed")
        try:
            for _ in range(KILLS):
                time.sleep(KILL_EVERY)
                kill(killed)
                killed = start_cluster(sandbox, "killed")
            kills_done = time.monotonic() - started
            while not settled() and time.monotonic() - started < 1800:
                time.sleep(1)
            elapsed = time.monotonic() - started
        finally:
            for cluster in (steady, killed):
                kill(cluster)
        lost, duplicated, orphans = audit(sandbox)
        statuses = Counter(Thread.objects.values_list("status", flat=True))
        print(
            f"{THREADS} threads, lease {LEASE} s, a cluster SIGKILLed every {KILL_EVERY:.0f} s "
            f"{KILLS} times ({kills_done:.0f} s): "
            f"{'settled' if settled() else 'NOT settled'} in {elapsed:.0f} s\n"
            f"  statuses: {dict(statuses)}\n"
            f"  faults injected: {dict(sandbox.state.fault_counts)}\n"
            f"  items lost: {lost}; items duplicated: {duplicated}; "
            f"orphan conversations holding items: {orphans}"
        )


if __name__ == "__main__":
    main()

"""Chaos run: the measurement of issue 8, repeated. Two real worker clusters on PostgreSQL migrate
threads (fetched from the sandbox, which injects faults); one cluster is frozen with SIGSTOP past
its leases, twice, and thawed with SIGCONT. Prints what the sandbox holds against what the
console says: items lost, items duplicated, conversations with items the mapping does not name.

    python -m tests.postgres python tests/benchmarks/chaos_sigstop.py

Knobs: CHAOS_THREADS (150), CHAOS_LEASE (20 s), CHAOS_FREEZE (90 s), CHAOS_FREEZES (2),
CHAOS_LATE (0.03): the share of writes the sandbox holds for 0.8 of a lease (past the client's
deadline), then applies and answers with a dropped connection: late writes whose answers are
lost, landing after a takeover or after their own owner verified (issue 20, finding 1).
"""

import os
import signal
import subprocess
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
from django_q.models import OrmQ  # noqa: E402

from migrations_app import actions  # noqa: E402
from migrations_app.conversion import Options, item_fingerprint  # noqa: E402
from migrations_app.models import (  # noqa: E402
    Attempt,
    Conversation,
    Thread,
    ThreadStatus,
    WriteClaim,
)
from migrations_app.preview import preview_thread  # noqa: E402
from migrations_app.sandbox import SandboxServer, seeded_state  # noqa: E402
from tests.cluster import CHAOS_FAULTS, session_pids  # noqa: E402

THREADS = int(os.environ.get("CHAOS_THREADS", 150))
LEASE = int(os.environ.get("CHAOS_LEASE", 20))
FREEZE = float(os.environ.get("CHAOS_FREEZE", 90))
FREEZES = int(os.environ.get("CHAOS_FREEZES", 2))
LATE = float(os.environ.get("CHAOS_LATE", 0.03))
OPEN = [ThreadStatus.PENDING, ThreadStatus.QUEUED, ThreadStatus.RUNNING]


def start_cluster(sandbox, name):
    env = {
        **os.environ,
        "SANDBOX_PORT": str(sandbox.port),
        "MIGRATION_LEASE_SECONDS": str(LEASE),
        "API_TIMEOUT_SECONDS": str(max(1, LEASE // 4)),
        "DEBUG": "false",
    }
    env.pop("OPENAI_API_KEY", None)
    log = open(f"/tmp/chaos-{name}.log", "w")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def mid_thread_in(cluster):
    """Threads the cluster holds with part of their items uploaded."""
    pids = session_pids(cluster.pid)
    running = Thread.objects.filter(status=ThreadStatus.RUNNING, items_committed__gt=0)
    return [
        t for t, owner in running.values_list("thread_id", "lease_owner")
        if int(owner.split(":")[1]) in pids
    ]  # fmt: skip


def wait(condition, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def unchecked_claims():
    return WriteClaim.objects.filter(checked_at__isnull=True, thread__status=ThreadStatus.SUCCEEDED)


def audit(sandbox):
    """(lost, duplicated, orphans holding items) by the sandbox's own state."""
    lost = duplicated = 0
    for thread in Thread.objects.filter(status=ThreadStatus.SUCCEEDED):
        live = thread.conversations.live().get()
        expected = [
            item_fingerprint(i)
            for i in preview_thread(thread, Options(**live.options) if live.options else None).items
        ]
        stored = [
            item_fingerprint(i) for i in sandbox.state.conversations[live.conversation_id]["items"]
        ]
        missing = Counter(expected) - Counter(stored)
        extra = Counter(stored) - Counter(expected)
        lost += sum(missing.values())
        duplicated += sum(extra.values())
        if not missing and not extra and stored != expected:
            duplicated += 1  # same items, wrong order
    named = set(Conversation.objects.values_list("conversation_id", flat=True))
    orphans = [
        c for c, conv in sandbox.state.conversations.items() if c not in named and conv["items"]
    ]
    return lost, duplicated, len(orphans)


def start_afresh():
    """The test database migrated and emptied of an earlier run's threads and tasks."""
    call_command("migrate", verbosity=0)
    Conversation.objects.all().delete()
    Attempt.objects.all().delete()
    Thread.objects.all().delete()
    OrmQ.objects.all().delete()


def main():
    start_afresh()
    with SandboxServer(state=seeded_state(seed=11, thread_count=THREADS)) as sandbox:
        sandbox.state.configure_faults(
            **CHAOS_FAULTS,
            slow_drop_after_write=LATE,
            slow_seconds=0.8 * LEASE,
            retry_after_seconds=1,
            latency_ms=30,
            seed=8,
        )
        ids = Path("/tmp/chaos-ids.txt")
        ids.write_text("\n".join(sandbox.state.threads))
        call_command("import_threads", str(ids), verbosity=0)
        actions.apply("migrate", Thread.objects.all(), actor_label="chaos")
        started = time.monotonic()
        slow, other = start_cluster(sandbox, "slow"), start_cluster(sandbox, "other")
        frozen_threads = set()
        try:
            for number in range(FREEZES):
                if not wait(lambda: len(mid_thread_in(slow)) >= 1, 120):
                    print(f"freeze {number + 1}: the slow cluster held no thread mid-upload")
                    break
                held = mid_thread_in(slow)
                frozen_threads.update(held)
                os.killpg(slow.pid, signal.SIGSTOP)
                print(f"freeze {number + 1}: SIGSTOP for {FREEZE:.0f} s, mid-upload: {len(held)}")
                time.sleep(FREEZE)
                os.killpg(slow.pid, signal.SIGCONT)
                time.sleep(5)
            settled = wait(
                lambda: (
                    not Thread.objects.filter(status__in=OPEN).exists()
                    and not OrmQ.objects.exists()
                ),
                900,
            )
            elapsed = time.monotonic() - started
            # A write claimed may land up to a lease later: the sweepers check those threads.
            rechecked = wait(lambda: not unchecked_claims().exists(), LEASE + 180)
        finally:
            for cluster in (slow, other):
                os.killpg(cluster.pid, signal.SIGCONT)
                os.killpg(cluster.pid, signal.SIGKILL)
                cluster.wait()
        lost, duplicated, orphans = audit(sandbox)
        statuses = Counter(Thread.objects.values_list("status", flat=True))
        attempts = Attempt.objects.exclude(action=Attempt.Action.FETCH)
        abandoned = attempts.filter(outcome=Attempt.Outcome.ABANDONED).count()
        taken_back = sum(
            (detail or {}).get("copies_taken_back", 0)
            for detail in attempts.values_list("detail", flat=True)
        )
        repairs = attempts.filter(action=Attempt.Action.REPAIR)
        claims = Counter(WriteClaim.objects.values_list("reason", flat=True))
        print(
            f"{THREADS} threads, lease {LEASE} s, {FREEZES} freezes of {FREEZE:.0f} s: "
            f"{'settled' if settled else 'NOT settled'} in {elapsed:.0f} s\n"
            f"  statuses: {dict(statuses)}\n"
            f"  faults injected: {dict(sandbox.state.fault_counts)}\n"
            f"  threads held mid-upload when frozen: {len(frozen_threads)}; "
            f"attempts abandoned (lease lost or taken over): {abandoned}\n"
            f"  writes claimed (may have landed unrecorded): {dict(claims)}; "
            f"{'all' if rechecked else 'NOT all'} checked a lease after\n"
            f"  copies taken back: {taken_back}; verified threads reopened to take a late write "
            f"back: {repairs.count()}\n"
            f"  items lost: {lost}; items duplicated: {duplicated}; "
            f"orphan conversations holding items: {orphans}"
        )


if __name__ == "__main__":
    main()

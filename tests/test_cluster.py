"""End to end with a real django-q2 cluster (its own process group), the sandbox on loopback and
PostgreSQL. Every check reads the sandbox's own state."""

import io
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ

from migrations_app import actions, intake
from migrations_app.models import Thread, ThreadStatus
from migrations_app.sandbox import SandboxServer, seeded_state
from tests import checks

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent


def database_url():
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class Cluster:
    """`manage.py qcluster` in its own session, so a SIGKILL takes every process of it."""

    def __init__(self, sandbox, log_dir, **env):
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "SANDBOX_PORT": str(sandbox.port),
            "Q_WORKERS": "2",
            "Q_TIMEOUT": "120",
            "Q_RETRY": "150",
            "MIGRATION_LEASE_SECONDS": "20",
            "MIGRATION_THREADS_PER_WORKER": "4",
            "MIGRATION_TASK_GROUP_SIZE": "4",
            **{k: str(v) for k, v in env.items()},
        }
        self.env.pop("OPENAI_API_KEY", None)
        self.log = open(log_dir / f"qcluster-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self):
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def world():
    """A sandbox with 200 varied threads, on loopback, for a separate process to reach."""
    with SandboxServer(state=seeded_state(seed=11, thread_count=200)) as server:
        yield server


@pytest.fixture
def clusters(world, tmp_path):
    started = []

    def start(**env):
        started.append(Cluster(world, tmp_path, **env).start())
        return started[-1]

    yield start
    for cluster in started:
        cluster.stop()


def wait_until(condition, timeout=180, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def all_settled():
    return not Thread.objects.filter(
        status__in=[ThreadStatus.PENDING, ThreadStatus.QUEUED, ThreadStatus.RUNNING]
    ).exists()


def register_all(world, count=None):
    ids = list(world.state.threads)[:count]
    intake.import_thread_ids(io.StringIO("\n".join(ids)), batch=intake.ImportBatch(source="paste"))
    return ids


def assert_sandbox_matches_everything(world):
    for thread in Thread.objects.all():
        checks.assert_migrated_exactly_once(world.state, thread)
    checks.assert_no_orphan_holds_items(world.state)
    checks.assert_every_thread_ended_clearly()


def test_two_hundred_threads_migrate_through_a_real_cluster(world, clusters):
    register_all(world)
    queued, _ = actions.apply("migrate", Thread.objects.all(), actor_label="test")
    assert queued == 200
    clusters()
    wait_until(all_settled, what="200 threads to settle")
    assert_sandbox_matches_everything(world)
    out = io.StringIO()
    call_command("export_mapping", stdout=out)
    rows = [line.split(",") for line in out.getvalue().splitlines()[1:]]
    assert len(rows) == 200
    mapped = {conversation for _, conversation, _, _, _ in rows}
    holding_items = {c for c, conv in world.state.conversations.items() if conv["items"]}
    assert holding_items <= mapped <= set(world.state.conversations)
    for _, conversation_id, status, items, _ in rows:
        assert status == "succeeded"
        assert len(world.state.conversations[conversation_id]["items"]) == int(items)


def test_faults_and_a_killed_cluster_lose_and_duplicate_nothing(world, clusters):
    register_all(world, 80)
    world.state.configure_faults(
        server_error=0.05,
        rate_limit=0.05,
        retry_after_seconds=0.2,
        drop_before_write=0.02,
        drop_after_write=0.02,
        latency_ms=20,
        seed=3,
    )
    actions.apply("migrate", Thread.objects.all(), actor_label="test")
    first = clusters()
    wait_until(
        lambda: (
            Thread.objects.filter(status=ThreadStatus.RUNNING, items_committed__gt=0).exists()
            and Thread.objects.filter(status=ThreadStatus.SUCCEEDED).count() >= 5
        ),
        what="the first cluster to be mid-thread",
    )
    first.kill()
    assert Thread.objects.filter(status=ThreadStatus.RUNNING).exists()
    # Time passes for the dead cluster: its leases and its tasks' locks run out.
    Thread.objects.filter(status=ThreadStatus.RUNNING).update(lease_expires_at=timezone.now())
    OrmQ.objects.update(lock=timezone.now() - timedelta(seconds=1))
    assert actions.sweep_stuck_threads() >= 1
    clusters()
    wait_until(all_settled, timeout=240, what="every thread to settle after the kill")
    assert sum(world.state.fault_counts.values()) > 0
    assert_sandbox_matches_everything(world)


def test_two_clusters_racing_for_the_same_threads_upload_each_once(world, clusters):
    register_all(world, 40)
    pks = list(Thread.objects.values_list("pk", flat=True))
    Thread.objects.update(status=ThreadStatus.QUEUED)
    actions.queue_migration(pks, "race one")
    actions.queue_migration(pks, "race two")  # every thread is in two tasks
    clusters()
    clusters()
    wait_until(all_settled, what="the raced threads to settle")
    wait_until(lambda: not OrmQ.objects.exists(), what="both tasks of every thread to run")
    assert_sandbox_matches_everything(world)
    assert len(world.state.conversations) == 40

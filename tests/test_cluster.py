"""End to end with a real django-q2 cluster (its own process group), the sandbox on loopback and
PostgreSQL. Every check reads the sandbox's own state."""

import io
import os
import re
import signal
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import OrmQ
from django_q.tasks import async_task

from migrations_app import actions, intake, states
from migrations_app.models import Attempt, Thread, ThreadStatus
from migrations_app.sandbox import SandboxServer, seeded_state
from tests import checks
from tests.cluster import (
    CHAOS_FAULTS,
    ROOT,
    Cluster,
    describe,
    parent_of,
    session_pids,
    wait_until,
)

pytestmark = [pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


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
    assert states.sweep("resume").resumed >= 1
    clusters()
    wait_until(all_settled, timeout=240, what="every thread to settle after the kill")
    assert sum(world.state.fault_counts.values()) > 0
    assert_sandbox_matches_everything(world)


def test_two_clusters_racing_for_the_same_threads_upload_each_once(world, clusters):
    register_all(world, 40)
    actions.apply("migrate", Thread.objects.all(), actor_label="test")
    for pk in Thread.objects.values_list("pk", flat=True):  # every thread is in a second task
        async_task(states.TASK_FUNCTION, [pk], group="race two")
    clusters()
    clusters()
    wait_until(all_settled, what="the raced threads to settle")
    wait_until(lambda: not OrmQ.objects.exists(), what="both tasks of every thread to run")
    assert_sandbox_matches_everything(world)
    assert len(world.state.conversations) == 40


def test_a_cluster_frozen_past_its_leases_and_thawed_duplicates_nothing(world, clusters):
    """The issue's measured failure: a slow worker, not a dead one. One cluster is frozen with
    SIGSTOP mid-thread, a second takes its threads over and finishes them, then the first is
    thawed with SIGCONT and goes on from wherever it stopped."""
    register_all(world, 60)
    world.state.configure_faults(**CHAOS_FAULTS, retry_after_seconds=0.2, latency_ms=20, seed=5)
    actions.apply("migrate", Thread.objects.all(), actor_label="test")
    short_leases = {
        "MIGRATION_LEASE_SECONDS": 8,
        "API_TIMEOUT_SECONDS": 3,
        "Q_TIMEOUT": 300,
        "Q_RETRY": 360,
        # A worker frozen inside a transaction holds its rows until the server ends its session.
        "DATABASE_IDLE_TRANSACTION_SECONDS": 4,
    }
    slow = clusters(**short_leases)
    wait_until(
        lambda: (
            Thread.objects.filter(status=ThreadStatus.RUNNING, items_committed__gt=0).count() >= 2
        ),
        what="the first cluster to be mid-thread",
    )
    slow.freeze()
    frozen = list(Thread.objects.filter(status=ThreadStatus.RUNNING).values_list("pk", flat=True))
    wait_until(
        lambda: (
            not Thread.objects.filter(
                pk__in=frozen, status=ThreadStatus.RUNNING, lease_expires_at__gt=timezone.now()
            ).exists()
        ),
        timeout=30,
        what="the frozen cluster's leases to expire",
    )
    # A statement sent just before the freeze may still have landed (a thread succeeded by it):
    # the threads the sweeper must resume are those still running now, their leases expired.
    stuck = Thread.objects.filter(pk__in=frozen, status=ThreadStatus.RUNNING).count()
    resumed = []

    def swept_them_all():  # what the minute's sweeper does, sooner
        resumed.append(states.sweep("resume").resumed)
        return not Thread.objects.filter(pk__in=frozen, status=ThreadStatus.RUNNING).exists()

    wait_until(swept_them_all, timeout=60, what="the sweeper to resume every frozen thread")
    assert sum(resumed) == stuck > 0
    clusters(**short_leases)
    wait_until(
        lambda: (
            Thread.objects.filter(pk__in=frozen, status=ThreadStatus.SUCCEEDED).count()
            == len(frozen)
        ),
        what="the second cluster to finish the frozen cluster's threads",
    )
    slow.thaw()
    wait_until(all_settled, timeout=120, what="every thread to settle after the thaw")
    wait_until(lambda: not OrmQ.objects.exists(), what="the thawed cluster to finish its tasks")
    assert sum(world.state.fault_counts.values()) > 0
    assert_sandbox_matches_everything(world)
    assert set(Thread.objects.values_list("status", flat=True)) == {ThreadStatus.SUCCEEDED}
    stopped = Attempt.objects.filter(thread_id__in=frozen, outcome=Attempt.Outcome.ABANDONED)
    assert stopped.count() >= stuck, "each frozen attempt says how it ended"


# --- how workers hold tasks, stop and sweep ----------------------------------------------------
def test_a_pool_busy_with_slow_threads_never_makes_django_q2_kill_its_process(world, clusters):
    """Issue 20, finding 4: every slot of the pool busy with a slow thread, the next task waited
    for a free one past Q_TIMEOUT and django-q2 killed the process with all its uploads. A task
    now hands what it cannot start back to the queue and returns within half of Q_TIMEOUT."""
    register_all(world, 6)
    world.state.configure_faults(
        slow_seconds=8,
        scripted=[{"kind": "slow", "method": "POST", "path_contains": "/items", "times": 4}],
    )
    actions.apply("migrate", Thread.objects.all(), actor_label="test")
    cluster = clusters(Q_WORKERS=1, Q_TIMEOUT=10, Q_RETRY=30, MIGRATION_THREADS_PER_WORKER=2,
                       MIGRATION_TASK_GROUP_SIZE=1, MIGRATION_LEASE_SECONDS=60,
                       API_TIMEOUT_SECONDS=20)  # fmt: skip
    wait_until(all_settled, timeout=150, what="every thread to settle")
    assert "after timeout" not in cluster.output(), "django-q2 killed a worker"
    assert not Attempt.objects.filter(outcome=Attempt.Outcome.ABANDONED).exists()
    assert_sandbox_matches_everything(world)


def supervisors():
    """How the README's systemd unit and container stop the cluster: (signal, to the whole
    process group?, seconds before the supervisor kills it)."""
    readme = (ROOT / "README.md").read_text().split("### Running the workers under a supervisor")[1]
    unit = dict(
        line.split("=", 1) for line in re.search(r"```ini\n(.*?)```", readme, re.S)[1].splitlines()
        if "=" in line
    )  # fmt: skip
    container = re.search(r"```dockerfile\n(.*?)```", readme, re.S)[1]
    return [
        pytest.param(
            getattr(signal, unit["KillSignal"]),
            unit["KillMode"] == "control-group",
            int(unit["TimeoutStopSec"]),
            id="the README's systemd unit",
        ),
        pytest.param(
            getattr(signal, re.search(r"STOPSIGNAL (\w+)", container)[1]),
            False,  # docker stop signals the container's main process only
            int(re.search(r"--time (\d+)", container)[1]),
            id="the README's container",
        ),
        pytest.param(signal.SIGINT, True, 30, id="Ctrl-C"),
    ]


def cluster_mid_upload(world, clusters, count):
    """`count` threads migrating on a cluster whose leases outlive the test (150 ms a request),
    returned once some thread is mid-upload."""
    register_all(world, count)
    world.state.configure_faults(latency_ms=150)
    actions.apply("migrate", Thread.objects.all(), actor_label="test")
    cluster = clusters(MIGRATION_LEASE_SECONDS=600, API_TIMEOUT_SECONDS=20)
    wait_until(
        lambda: Thread.objects.filter(status=ThreadStatus.RUNNING, items_committed__gt=0).exists(),
        what="threads mid-upload",
    )
    return cluster


@pytest.mark.parametrize("signum, group, grace", supervisors())
def test_a_cluster_stops_within_seconds_however_it_is_stopped_and_hands_threads_back(
    world, clusters, signum, group, grace
):
    """Issue 20, finding 12: SIGTERM to the whole process group (systemd's KillMode default)
    left the main process hanging. Every way stops it within seconds, and the threads it was
    running go back to the queue at once rather than waiting out their leases."""
    cluster = cluster_mid_upload(world, clusters, 40)
    cluster.send(signum, group=group)
    seconds = min(grace, 20)  # within seconds, well inside the supervisor's grace
    assert cluster.stopped_within(seconds), f"running {seconds} s later:\n{cluster.output()}"
    held = Thread.objects.filter(status=ThreadStatus.RUNNING)
    assert not held.exists(), f"left running under a lease: {list(held.values_list('pk'))}"
    handed = Attempt.objects.filter(error_message__startswith="Handed back")
    assert handed.exists()
    clusters()
    wait_until(all_settled, timeout=150, what="a new cluster to finish every thread")
    assert_sandbox_matches_everything(world)


def test_the_sweeper_runs_while_every_worker_is_busy_and_the_queue_deep(world, clusters):
    """Issue 20, finding 6: the sweeper's task waited behind every migration task. Each worker
    process now offers to run it from a thread of its own."""
    from migrations_app.models import Heartbeat

    for _ in range(30):
        async_task("time.sleep", 30)  # the one worker busy, 29 tasks waiting behind it
    Heartbeat.objects.filter(name="sweep").delete()
    clusters(Q_WORKERS=1, Q_TIMEOUT=60, Q_RETRY=90)
    wait_until(
        lambda: Heartbeat.objects.filter(name="sweep", last_finished__isnull=False).exists(),
        timeout=40,
        what="a sweep while the queue is deep",
    )
    assert OrmQ.objects.count() >= 25, "the sweep did not wait for the queue to drain"


# --- delta re-sync under chaos -----------------------------------------------------------------
def source_items(state, thread_id):
    """What a thread at the source converts to now."""
    from migrations_app.conversion import Options, convert_thread

    with state.lock:
        steps = [step for run in state.runs[thread_id] for step in state.steps.get(run["id"], [])
                 if step.get("type") == "tool_calls"]  # fmt: skip
        messages = list(state.messages[thread_id])
    return convert_thread(state.threads[thread_id], messages, steps, Options()).items


def test_syncing_threads_while_messages_keep_arriving_under_faults_and_a_killed_worker(
    world, clusters
):
    """Issue 18: 100 migrated threads keep receiving messages at the source while syncs run, with
    the usual faults, and one worker cluster SIGKILLed mid-way. At the end every conversation
    equals its source thread, nothing duplicated."""
    from migrations_app import sync
    from migrations_app.conversion import item_fingerprint

    register_all(world, 100)
    actions.apply("migrate", Thread.objects.all(), actor_label="test")
    steady = clusters()
    wait_until(all_settled, timeout=240, what="the first migration")
    world.state.configure_faults(**CHAOS_FAULTS, retry_after_seconds=0.2, latency_ms=10, seed=3)
    world.state.start_trickle(0.05, tools=("function", None), seed=4)
    doomed = clusters()

    def sync_pass():
        sync.queue_checks(sync.syncable().values_list("pk", flat=True), group="test sync")

    for round_number in range(6):
        sync_pass()
        if round_number == 2:
            doomed.kill()  # SIGKILL, mid-sync
        wait_until(lambda: not OrmQ.objects.exists(), timeout=120, what="the checks to run")
    world.state.stop_trickle()
    assert sum(world.state.turns_added.values()) > 50

    def caught_up():
        sync_pass()
        wait_until(lambda: not OrmQ.objects.exists(), timeout=120, what="the checks to run")
        states.sweep("test")  # the killed cluster's threads, without waiting a minute
        return all_settled() and not any(
            len(world.state.conversations[t.conversation_id]["items"])
            != len(source_items(world.state, t.thread_id))
            for t in Thread.objects.all()
        )

    wait_until(caught_up, timeout=400, what="every thread to catch up with its source")
    assert steady.process.poll() is None
    for thread in Thread.objects.all():
        stored = world.state.conversations[thread.conversation_id]["items"]
        expected = source_items(world.state, thread.thread_id)
        assert [item_fingerprint(i) for i in stored] == [item_fingerprint(i) for i in expected]
        checks.assert_migrated_exactly_once(world.state, thread)
    checks.assert_no_orphan_holds_items(world.state)
    assert not Thread.objects.exclude(diverged="").exists()


def test_workers_whose_sentinel_was_killed_hand_their_threads_back_and_exit(world, clusters):
    """A sentinel killed outright (the OOM killer) left its workers waiting for tasks forever,
    holding their threads and their database connections. They notice within seconds."""
    cluster = cluster_mid_upload(world, clusters, 30)
    group = cluster.process.pid
    sentinel = next(pid for pid in session_pids(group) if parent_of(pid) == group)
    os.kill(sentinel, signal.SIGKILL)
    deadline = time.monotonic() + 40
    while session_pids(group) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not session_pids(group), f"left running: {describe(session_pids(group))}"
    held = Thread.objects.filter(status=ThreadStatus.RUNNING)
    assert not held.exists(), "its threads were handed back, not left under their leases"

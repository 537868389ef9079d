"""A real django-q2 cluster for tests: `manage.py qcluster` in its own process group, on the test
database, pointed at a sandbox."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent

# The faults of issue 8's measurement (for the sandbox's configure_faults): 3 % server errors,
# 3 % 429s, 2 % connections dropped before a write, 2 % writes applied and then dropped.
CHAOS_FAULTS = {
    "server_error": 0.03,
    "rate_limit": 0.03,
    "drop_before_write": 0.02,
    "drop_after_write": 0.02,
}


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
            "API_TIMEOUT_SECONDS": "5",
            "MIGRATION_THREADS_PER_WORKER": "4",
            "MIGRATION_TASK_GROUP_SIZE": "4",
            # The sandbox has no cap: source reads need not wait for the default budget.
            "ASSISTANTS_REQUESTS_PER_MINUTE": "60000",
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

    def freeze(self):
        """SIGSTOP every process of the cluster: a worker that is slow, not dead."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self):
        os.killpg(self.process.pid, signal.SIGCONT)

    def send(self, signum, *, group=True):
        """A supervisor's stop: to the whole process group (systemd's default) or the main
        process only (Docker, Kubernetes)."""
        if group:
            os.killpg(self.process.pid, signum)
        else:
            os.kill(self.process.pid, signum)

    def stopped_within(self, seconds):
        try:
            self.process.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False

    def output(self):
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.thaw()
            os.killpg(self.process.pid, signal.SIGTERM)
            if not self.stopped_within(30):
                self.kill()
        self.log.close()


def wait_until(condition, timeout=180, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{snapshot()}")


def nothing_queued_or_running():
    from migrations_app.models import Thread, ThreadStatus

    return not Thread.objects.filter(
        status__in=[ThreadStatus.QUEUED, ThreadStatus.RUNNING]
    ).exists()


def wait_for_the_cluster(timeout=180):
    """Until the cluster has taken and finished every queued thread."""
    wait_until(nothing_queued_or_running, timeout, what="the cluster to finish")


def snapshot():
    """Where the threads and the database sessions stand: what a timed-out test needs to say."""
    from django.db.models import Count

    from migrations_app.models import Thread

    statuses = dict(Thread.objects.values_list("status").annotate(n=Count("pk")))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, wait_event_type, wait_event, left(query, 160) "
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        sessions = "\n".join(str(row) for row in cursor.fetchall())
    return f"threads by status: {statuses}\nsessions:\n{sessions}"


# --- the processes of a cluster (its process group) ----------------------------------------------
def session_pids(leader: int) -> set[int]:
    """The live (not zombie) processes whose process group is `leader`."""
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader and fields[0] != "Z":
            pids.add(int(pid))
    return pids


def describe(pids):
    return [(pid, parent_of(pid), Path(f"/proc/{pid}/cmdline").read_bytes()[:60]) for pid in pids]


def parent_of(pid):
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])

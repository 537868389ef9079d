"""The console's django-q2 workers: how they stop, and the sweeper that never waits in the queue.

**Stopping.** A supervisor stops a cluster with SIGTERM to its main process (Docker, Kubernetes),
to its whole process group (systemd's default, KillMode=control-group) or with SIGINT (Ctrl-C).
django-q2's sentinel process dies at once on SIGTERM, and its main process then waits forever to
wake it (the stop event's condition counts the dead sentinel as a sleeper): a cluster stopped
through its group hung. Here the sentinel ignores SIGTERM and stops when the main process tells
it to, and tells its workers first (SIGTERM, which each worker handles): their threads hand the
threads they run back to the queue at their next request (`upload.STOPPING`), and each worker
exits once they have, or after `upload.HAND_BACK_SECONDS` whatever is still in flight.

**The sweeper** (`tasks.sweep_stuck_threads`) used to be a one-minute django-q2 schedule: one row
that nothing recreated, whose task waited behind every migration task in the queue. Now every
worker process offers to run it from a thread of its own each few seconds, and the one whose
claim moves the sweep's heartbeat on runs it (`Heartbeat.objects.claim`). The schedule is
ensured at every migrate and stays as a fallback (it finds the sweep done and returns).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing.util
import os
import signal
import threading
from typing import Any

from django.db import close_old_connections

log = logging.getLogger(__name__)
CONTROL_SECONDS = 5.0  # how often a worker process offers to run the recurring jobs


def install() -> None:
    """Use the console's sentinel for the clusters this process starts (the qcluster command)."""
    import django_q.cluster

    django_q.cluster.Sentinel = _console_sentinel()


def _console_sentinel() -> type:
    from django_q.cluster import Sentinel

    class ConsoleSentinel(Sentinel):
        def start(self) -> None:
            # The main process tells the sentinel to stop; SIGTERM to the group must not kill
            # it (its children, spawned after this, ignore it too until they say otherwise).
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            # A child outliving a killed sentinel would go on forever: a pusher taking tasks
            # nobody runs, workers waiting for tasks nobody hands out. They die with it (a
            # worker asks for SIGTERM instead, and hands its threads back: on_worker_started).
            multiprocessing.util.register_after_fork(self, lambda _: die_with_parent())
            super().start()

        def stop(self) -> None:
            for process in list(self.pool):
                with contextlib.suppress(ProcessLookupError, TypeError):
                    os.kill(process.pid, signal.SIGTERM)  # hand your threads back
            super().stop()

    return ConsoleSentinel


PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Ask Linux to send this process `signum` when its parent dies (prctl PR_SET_PDEATHSIG);
    elsewhere nothing: a worker's control thread still notices its sentinel is gone."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def on_worker_started(sender: object, **kwargs: Any) -> None:
    """django-q2's post_spawn, in each worker process: load the engine and its clients, hand
    threads back on SIGTERM, and offer to run the sweeper."""
    from migrations_app import openai_client, upload

    openai_client.destination_client()
    openai_client.source_client()
    stopped = threading.Event()

    def stop(signum: int, frame: object) -> None:
        upload.stop_soon()
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    die_with_parent(signal.SIGTERM)
    sentinel = os.getppid()
    threading.Thread(
        target=_offer_recurring_jobs, args=(stopped, sentinel), name="control", daemon=True
    ).start()


def _offer_recurring_jobs(stopped: threading.Event, sentinel: int) -> None:
    """Every few seconds, until the worker stops: the recurring jobs. Whatever happens, a worker
    whose sentinel is gone (killed) hands its threads back and exits: nothing else would stop it
    (its loop waits for tasks only the sentinel's pusher hands out)."""
    from migrations_app import tasks, upload

    while True:
        stopping = stopped.wait(1.0 if stopped.is_set() else CONTROL_SECONDS)
        if os.getppid() != sentinel:
            log.warning("the cluster's sentinel is gone: this worker hands its threads back")
            upload.close_pool(grace=upload.HAND_BACK_SECONDS)
            os._exit(0)
        if stopping:  # the sentinel stops the worker; only watch that it is still there
            continue
        try:
            close_old_connections()
            tasks.sweep_stuck_threads()
            tasks.sync_pass_if_due()
            run_control_tasks(stopped)
        except Exception:
            log.exception("the worker's recurring jobs failed; it offers again in a moment")


# --- the control lane ----------------------------------------------------------------------------
# Control actions (a bulk cancel) must not wait behind the migration tasks they control: their
# tasks go to a queue of their own, which every worker process serves from its control thread.
def control_queue() -> str:
    from django_q.conf import Conf

    return f"{Conf.CLUSTER_NAME}-control"


def control_broker() -> Any:
    from django_q.brokers import get_broker

    return get_broker(control_queue())


def run_control_tasks(stopped: threading.Event | None = None) -> int:
    """Run the control lane's queued tasks, one at a time, until it is empty; returns how many.
    A task taken here is not taken by another process (the broker locks it until Q_RETRY)."""
    import pydoc

    from django_q.signing import SignedPackage

    broker, ran = control_broker(), 0
    while not (stopped and stopped.is_set()):
        taken = broker.dequeue() if broker.queue_size() else None
        if not taken:
            return ran
        for task_id, payload in taken:
            task = SignedPackage.loads(payload)
            function: Any = pydoc.locate(task["func"])
            try:
                function(*task["args"], **task["kwargs"])
            except Exception:
                log.exception("control task %s failed", task.get("name"))
            broker.acknowledge(task_id)
            ran += 1
    return ran

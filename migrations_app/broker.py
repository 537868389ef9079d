"""django-q2's ORM broker, handing tasks out in order, with a way to queue one ahead of the rest.

As django-q2 ships it, the ORM broker takes "any" task whose `lock` has passed (no ORDER BY):
PostgreSQL returns the first it meets in the table, which is roughly the oldest but not always,
and a task queued now waits behind every task already in the table, however deep the queue.

This broker takes the task with the earliest `lock` first (then the lowest id), so tasks run in
the order they were queued, and a task queued *ahead* is given a `lock` far in the past
(`AHEAD_LOCK`): it comes before every ordinary task, and tasks queued ahead come in their own
order. The cluster's broker is this class (settings.Q_CLUSTER["broker_class"]); an index on
(key, lock, id), created by migration 0015, keeps the ordered take one index probe at any depth.

What it cannot overtake: tasks a cluster has already taken. Each cluster holds up to
`queue_limit` (workers²) taken tasks in memory, plus the one its pusher is handing over, and each
worker process the threads it is running (MIGRATION_THREADS_PER_WORKER); a task queued ahead runs
after those, before everything still in the table.

A task whose worker died is handed out again once its lock (taken + Q_RETRY) has passed, in
order of that time, as before.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf

# The lock of a task queued ahead: before every ordinary task's (their lock is when they were
# queued, or when a dead worker's hold on them runs out).
AHEAD_LOCK = datetime(2000, 1, 1, tzinfo=UTC)
CLASS_PATH = "migrations_app.broker.OrderedORM"


class OrderedORM(ORM):
    """The ORM broker, oldest task first; `ahead=True` queues in front of the others."""

    def __init__(self, list_key: str | None = None, ahead: bool = False) -> None:
        super().__init__(list_key=list_key or Conf.CLUSTER_NAME)
        self.ahead = ahead

    def enqueue(self, task: str) -> int:
        lock = AHEAD_LOCK if self.ahead else timezone.now()
        package = self.get_connection().create(
            key=self.list_key or Conf.CLUSTER_NAME, payload=task, lock=lock
        )
        return int(package.pk)

    def dequeue(self) -> list[tuple[int, Any]] | None:
        tasks = self.get_connection().filter(key=self.list_key, lock__lt=timezone.now())
        tasks = tasks.order_by("lock", "id")[: Conf.BULK]
        taken = []
        for task in tasks:
            # Another cluster may have taken it meanwhile: the lock it read is the fence.
            if (
                self.get_connection()
                .filter(id=task.id, lock=task.lock)
                .update(lock=self.timeout(task))
            ):
                taken.append((task.pk, task.payload))
        if taken:
            return taken
        if not tasks:
            from time import sleep

            sleep(Conf.POLL)  # an empty queue: spare the CPU, as django-q2's own broker does
        return None

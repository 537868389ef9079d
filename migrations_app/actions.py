"""What staff can do to threads, from the admin or the command line: plan (who would be acted on,
who skipped and why) and apply (change states, record who did it, queue the work).

Each action names the states it applies to; every other state is skipped with a reason, so a
confirmation page can say exactly what will happen before anything does.
"""

from dataclasses import dataclass, field
from itertools import islice

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from migrations_app.models import Attempt, Conversation, Thread, ThreadStatus

S = ThreadStatus
CHUNK = 2000


@dataclass(frozen=True)
class ActionRule:
    name: str
    label: str
    eligible: tuple
    skip_reasons: dict
    attempt_action: str
    new_status: str | None = S.QUEUED


RULES = {
    rule.name: rule
    for rule in (
        ActionRule(
            "migrate",
            "Migrate",
            (S.PENDING, S.FAILED, S.CANCELLED),
            {
                S.SUCCEEDED: "already migrated (use re-migrate to create a new conversation)",
                S.QUEUED: "already queued",
                S.RUNNING: "running now",
            },
            Attempt.Action.MIGRATE,
        ),
        ActionRule(
            "retry",
            "Retry",
            (S.FAILED, S.CANCELLED),
            {
                S.PENDING: "not failed (use migrate)",
                S.SUCCEEDED: "already migrated",
                S.QUEUED: "already queued",
                S.RUNNING: "running now",
            },
            Attempt.Action.RETRY,
        ),
        ActionRule(
            "remigrate",
            "Re-migrate",
            (S.SUCCEEDED,),
            {
                S.PENDING: "never migrated (use migrate)",
                S.FAILED: "not migrated (use retry)",
                S.CANCELLED: "not migrated (use migrate)",
                S.QUEUED: "already queued",
                S.RUNNING: "running now",
            },
            Attempt.Action.REMIGRATE,
        ),
        ActionRule(
            "cancel",
            "Cancel",
            (S.QUEUED,),
            {
                S.PENDING: "not queued",
                S.FAILED: "not queued",
                S.CANCELLED: "already cancelled",
                S.SUCCEEDED: "already migrated",
                S.RUNNING: "running now (it will finish)",
            },
            Attempt.Action.CANCEL,
            S.CANCELLED,
        ),
    )
}


@dataclass
class Plan:
    rule: ActionRule
    eligible: int
    skipped: dict = field(default_factory=dict)  # reason -> count

    @property
    def skipped_total(self):
        return sum(self.skipped.values())


def plan(action, threads):
    """How many of `threads` the action applies to, and why the rest are skipped. One
    GROUP BY status query, whatever the number of threads."""
    rule = RULES[action]
    by_status = dict(
        threads.order_by()
        .values_list("status")
        .annotate(count=Count("pk"))
        .values_list("status", "count")
    )
    skipped = {}
    for status, count in by_status.items():
        if status not in rule.eligible:
            reason = rule.skip_reasons.get(status, f"status {status}")
            skipped[reason] = skipped.get(reason, 0) + count
    eligible = sum(count for status, count in by_status.items() if status in rule.eligible)
    return Plan(rule=rule, eligible=eligible, skipped=skipped)


def _chunks(iterator, size):
    while chunk := list(islice(iterator, size)):
        yield chunk


def apply(action, threads, *, user=None, actor_label="", enqueue=True, on_chunk=None):
    """Apply an action to every eligible thread in `threads`; returns (count, task group).

    Works in chunks, so "all 10 million threads matching this filter" never loads them at once.
    Each thread's state changes only if it is still eligible when its chunk is written.
    """
    rule = RULES[action]
    group = f"{action} {timezone.now():%Y-%m-%d %H:%M:%S}"
    pks = threads.filter(status__in=rule.eligible).order_by("pk").values_list("pk", flat=True)
    total = 0
    for chunk in _chunks(pks.iterator(chunk_size=CHUNK), CHUNK):
        changed = _apply_chunk(rule, chunk, group, user, actor_label)
        total += len(changed)
        if on_chunk and changed:
            on_chunk(changed)
        if enqueue and rule.new_status == S.QUEUED and changed:
            queue_migration(changed, group)
    return total, group


def _apply_chunk(rule, chunk, group, user, actor_label):
    now = timezone.now()
    with transaction.atomic():
        changed = list(
            Thread.objects.select_for_update()
            .filter(pk__in=chunk, status__in=rule.eligible)
            .values_list("pk", flat=True)
        )
        replaced = {}
        if rule.name == "remigrate":
            replaced = dict(
                Conversation.objects.live()
                .filter(thread__in=changed)
                .values_list("thread_id", "conversation_id")
            )
            Conversation.objects.filter(thread__in=changed, replaced_at__isnull=True).update(
                replaced_at=now
            )
        fields = {"status": rule.new_status, "updated_at": now, "task_group": group}
        if rule.name == "remigrate":
            fields.update(items_committed=0, items_total=0)
        if rule.new_status == S.QUEUED:
            fields.update(lease_owner="", lease_expires_at=None)
        Thread.objects.filter(pk__in=changed).update(**fields)
        Attempt.objects.bulk_create(
            [
                Attempt(
                    thread_id=pk,
                    action=rule.attempt_action,
                    outcome=Attempt.Outcome.CANCELLED
                    if rule.new_status == S.CANCELLED
                    else Attempt.Outcome.QUEUED,
                    actor=user,
                    actor_label=actor_label,
                    started_at=now,
                    finished_at=now,
                    conversation_id=replaced.get(pk, ""),
                    detail={
                        "group": group,
                        **({"replaced": replaced[pk]} if pk in replaced else {}),
                    },
                )
                for pk in changed
            ]
        )
    return changed


def queue_migration(thread_pks, group):
    """One django-q2 task per small group of threads, each run with threads in flight.
    The group name is the task group, so staff see the batch in django-q2's admin."""
    from django_q.tasks import async_task

    size = settings.MIGRATION_TASK_GROUP_SIZE
    for start in range(0, len(thread_pks), size):
        async_task(
            "migrations_app.tasks.migrate_threads",
            list(thread_pks[start : start + size]),
            group=group,
            task_name=f"{group} #{start // size + 1}",
        )


def sweep_stuck_threads(now=None):
    """Running threads whose worker stopped renewing its lease go back to the queue; the next
    worker resumes them from the last committed batch. Returns how many."""
    group = f"resume {timezone.now():%Y-%m-%d %H:%M:%S}"
    with transaction.atomic():
        requeued = list(
            Thread.objects.select_for_update(skip_locked=True)
            .lease_expired(now)
            .values_list("pk", flat=True)[:CHUNK]
        )
        Thread.objects.filter(pk__in=requeued).update(
            status=S.QUEUED,
            lease_owner="",
            lease_expires_at=None,
            task_group=group,
            updated_at=timezone.now(),
        )
    if requeued:
        queue_migration(requeued, group)
    return len(requeued)

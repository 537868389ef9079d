"""The retention watchdog against the sandbox: verified conversations read again, within the
destination's budget, each at least once per WATCH_DAYS; one lost at the destination (deleted,
its items answering 404, an item gone) marks its thread failed as lost, remedy re-migrate."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from migrations_app import actions, readiness, states, tallies, watchdog
from migrations_app.models import Attempt, Conversation, ErrorKind, Thread, ThreadStatus
from migrations_app.ratelimit import SharedRateLimiter
from tests import factories

pytestmark = pytest.mark.django_db


class CountingLimiter(SharedRateLimiter):
    """The destination's budget, never waiting, counting the slots taken."""

    def __init__(self):
        super().__init__(per_minute=10**7)
        self.taken = 0

    def reserve(self):
        self.taken += 1
        return 0.0


@pytest.fixture
def limiter():
    return CountingLimiter()


@pytest.fixture
def reader(sandbox, limiter, slept):
    from migrations_app import openai_client

    counter = readiness.Counter(
        client=openai_client.destination_client(), limiter=limiter, sleeper=slept.append
    )
    return watchdog.Reader(counter)


def live(thread):
    return Conversation.objects.live().get(thread=thread)


def test_an_intact_conversation_is_read_and_its_thread_left_succeeded(migrated, reader, limiter):
    (thread,) = migrated()
    watch = watchdog.run(reader=reader)
    assert (watch.read, watch.intact, watch.lost) == (1, 1, 0)
    thread.refresh_from_db()
    assert thread.status == ThreadStatus.SUCCEEDED
    conversation = live(thread)
    assert conversation.watched_at is not None
    assert conversation.input_tokens > 0  # counted again for the readiness check
    assert limiter.taken == 2  # one page of items, one token count: each in the budget


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("conversation", watchdog.GONE.format(status=404)),
        ("items", watchdog.GONE.format(status=404)),
        ("last_item", watchdog.FEWER),
    ],
)
def test_a_conversation_lost_at_the_destination_fails_its_thread_as_lost(
    migrated, reader, sandbox, how, message
):
    (thread,) = migrated()
    conversation_id = thread.conversation_id
    sandbox.state.lose(conversation_id, how)
    watch = watchdog.run(reader=reader)
    assert watch.lost == 1
    thread.refresh_from_db()
    assert (thread.status, thread.error_kind, thread.error_message) == ("failed", "lost", message)
    # The mapping is never erased: the thread keeps its conversation id and rows.
    assert thread.conversation_id == conversation_id
    assert live(thread).conversation_id == conversation_id
    history = Attempt.objects.filter(thread=thread).first()
    assert (history.action, history.outcome, history.actor_label) == (
        "watch",
        "failed",
        "retention watchdog",
    )
    assert history.detail["conversation"] == conversation_id


def test_a_lost_thread_is_re_migrated_and_only_re_migrated(migrated, reader, sandbox):
    (thread,) = migrated()
    sandbox.state.lose(thread.conversation_id, "conversation")
    watchdog.run(reader=reader)
    assert states.applicable_actions(thread.pk) == {"remigrate"}
    thread.refresh_from_db()
    assert states.remedy(thread).startswith("Its conversation is gone or changed")
    assert states.remedy_action(ErrorKind.LOST) == "remigrate"
    old = thread.conversation_id
    assert actions.apply("remigrate", Thread.objects.filter(pk=thread.pk), enqueue=False)[0] == 1
    # Replaced when the new upload starts; until then it stays in the mapping.
    assert Conversation.objects.get(conversation_id=old).replace_requested_at is not None


def test_a_changed_last_item_marks_the_thread_lost(migrated, reader, sandbox):
    (thread,) = migrated()
    items = sandbox.state.conversations[thread.conversation_id]["items"]
    items[-1] = {**items[-1], "id": "msg_replaced"}
    watchdog.run(reader=reader)
    thread.refresh_from_db()
    assert thread.error_message == watchdog.CHANGED
    assert (
        Attempt.objects.filter(thread=thread, action="watch").get().detail["found_in_its_place"]
        == "msg_replaced"
    )


def test_turns_an_application_added_after_the_verified_items_do_not_matter(
    migrated, reader, sandbox
):
    (thread,) = migrated()
    sandbox.state.add_items(
        thread.conversation_id, [{"type": "message", "role": "user", "content": "And now?"}]
    )
    assert watchdog.run(reader=reader).intact == 1


def test_a_thread_re_migrated_while_it_was_read_is_not_touched(migrated, sandbox, reader):
    (thread,) = migrated()
    sandbox.state.lose(thread.conversation_id, "conversation")

    class RemigratedMeanwhile(watchdog.Reader):
        def check(self, claimed):
            found = super().check(claimed)
            actions.apply("remigrate", Thread.objects.filter(pk=claimed.thread_id), enqueue=False)
            return found

    watch = watchdog.run(reader=RemigratedMeanwhile(reader.counter))
    assert watch.lost == 0
    thread.refresh_from_db()
    assert (thread.status, thread.error_kind) == ("queued", "")


def test_mark_lost_applies_only_to_a_thread_still_succeeded_with_that_conversation():
    thread = factories.succeeded(Thread.objects.create(thread_id="thread_fence"), "conv_new")
    assert not states.mark_lost(thread.pk, "conv_old", "Lost")
    factories.failed(thread)
    assert not states.mark_lost(thread.pk, "conv_new", "Lost")
    factories.in_state(thread, ThreadStatus.SUCCEEDED)
    assert states.mark_lost(thread.pk, "conv_new", "Lost")
    assert not states.mark_lost(thread.pk, "conv_new", "Lost")  # once
    assert Attempt.objects.filter(thread=thread, action="watch").count() == 1


def test_a_transient_error_leaves_the_conversation_due_again(migrated, reader, sandbox):
    (thread,) = migrated()
    sandbox.state.configure_faults(server_error=1.0)
    watch = watchdog.run(reader=reader)
    assert (watch.read, watch.not_read, watch.lost) == (0, 1, 0)
    assert live(thread).watched_at is None
    assert Thread.objects.get(pk=thread.pk).status == ThreadStatus.SUCCEEDED


def test_the_safety_catch_marks_nothing_when_most_conversations_look_lost(
    migrated, reader, sandbox
):
    threads = migrated(watchdog.BREAKER_MIN)
    for thread in threads:
        sandbox.state.lose(thread.conversation_id, "conversation")
    with time_machine.travel(timezone.now() + timedelta(days=40), tick=False):
        watch = watchdog.run(reader=reader)  # all overdue: read in one run
    assert (watch.read, watch.lost, watch.held_back) == (10, 0, 10)
    assert "none was marked" in watch.stopped and "OPENAI_API_KEY" in watch.stopped
    assert set(Thread.objects.values_list("status", flat=True)) == {"succeeded"}
    assert not Conversation.objects.filter(watched_at__isnull=False).exists()


# --- pacing: every conversation read at least once per WATCH_DAYS --------------------------------
def fake_migrated(count, verified_at):
    """`count` succeeded threads with verified conversations (not at any destination)."""
    threads = factories.threads(count, prefix="thread_watched", status=ThreadStatus.SUCCEEDED)
    Conversation.objects.bulk_create(
        Conversation(
            thread=thread,
            conversation_id=f"conv_watched{index:05d}",
            verified_at=verified_at,
            verified_item_count=2,
            last_item_id="msg_2",
        )
        for index, thread in enumerate(threads)
    )
    tallies.compact()
    return threads


class IntactReader(watchdog.Reader):
    """Every conversation intact, without a request: the pacing alone."""

    def __init__(self):
        self.read = []

    def check(self, claimed):
        self.read.append(claimed.conversation_id)
        return None


def test_each_run_reads_its_share_so_that_all_are_read_within_watch_days(settings):
    settings.WATCH_DAYS = 1  # 288 runs of five minutes
    start = datetime(2026, 11, 26, tzinfo=UTC)
    fake_migrated(600, verified_at=start)
    assert watchdog.share_per_run(600) == 3
    reader = IntactReader()
    with time_machine.travel(start, tick=False) as clock:
        for _ in range(200):  # 200 runs: 16 h 40 min
            clock.shift(timedelta(minutes=watchdog.RUN_EVERY_MINUTES))
            assert watchdog.run(reader=reader).read == 3
    assert len(reader.read) == len(set(reader.read)) == 600  # each once, none twice
    assert not Conversation.objects.filter(watched_at=None).exists()


def test_the_least_recently_read_come_first_and_overdue_ones_are_caught_up(settings):
    settings.WATCH_DAYS = 30
    now = datetime(2026, 11, 26, tzinfo=UTC)
    fake_migrated(40, verified_at=now - timedelta(days=45))  # the watchdog was not running
    reader = IntactReader()
    with time_machine.travel(now, tick=False):
        watch = watchdog.run(reader=reader)
    assert watch.read == 40  # a share of 1, and every overdue one on top
    assert reader.read == [f"conv_watched{index:05d}" for index in range(40)]


def test_a_run_stops_taking_conversations_when_its_time_is_up(settings):
    now = datetime(2026, 11, 26, tzinfo=UTC)
    fake_migrated(120, verified_at=now - timedelta(days=45))
    ticks = iter(range(1000))
    with time_machine.travel(now, tick=False):
        watch = watchdog.run(reader=IntactReader(), seconds=30, clock=lambda: next(ticks))
    assert 0 < watch.read < 120
    unread = Conversation.objects.filter(watched_at=None).count()
    assert unread == 120 - watch.read  # claimed and not read: due again


def test_migration_0015_schedules_the_watchdog_every_five_minutes():
    import importlib

    from django.apps import apps

    migration = importlib.import_module("migrations_app.migrations.0015_applications_side")
    Schedule.objects.filter(func=watchdog.WATCHER).delete()
    migration.create_watch_schedule(apps, None)
    migration.create_watch_schedule(apps, None)  # again: still one
    schedule = Schedule.objects.get(func=watchdog.WATCHER)
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == ("I", 5, -1)


def test_the_task_queue_has_its_ordered_index():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'migrations_app_ormq_order_idx'")
        assert cursor.fetchone()


def test_the_task_reads_then_counts_and_reports_both(migrated, settings):
    from migrations_app import tasks

    settings.API_REQUESTS_PER_MINUTE = 10**7  # the shared budget never makes the test wait
    migrated(2)  # a share of one a run: one is read (and counted again), the other counted
    result = tasks.watch_conversations()
    assert result["watch"]["read"] == 1 and result["watch"]["intact"] == 1
    assert result["readiness"]["counted"] == 1
    assert not readiness.uncounted().exists()

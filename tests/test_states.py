"""The fenced state machine: a worker that froze past its lease, stale writers, stuck states and
every failure's remedy. The worker's clock is frozen with time-machine; the database's clock is
moved by expiring the lease row, as time passing would."""

import dataclasses
import re
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from migrations_app import actions, intake, openai_client, states, upload
from migrations_app.conversion import Options, item_fingerprint
from migrations_app.models import Attempt, ErrorKind, Thread, ThreadStatus, WriteClaim
from migrations_app.openai_client import ApiFailure
from migrations_app.preview import preview_thread
from tests import checks
from tests.cluster import wait_until
from tests.engine import queue, register, script

pytestmark = pytest.mark.django_db
LEASE = 60


def expire_lease(thread):
    """The database's clock passes the lease (what a freeze longer than the lease looks like)."""
    Thread.objects.filter(pk=thread.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def assert_exactly_once(sandbox, thread):
    checks.assert_migrated_exactly_once(sandbox.state, thread)
    checks.assert_no_orphan_holds_items(sandbox.state)


def on_write(monkeypatch, number, action):
    """Run `action(real_add_items, args)` in place of the `number`th write of items."""
    real = openai_client.add_items
    writes = []

    def add_items(*args):
        writes.append(args)
        if len(writes) == number:
            return action(real, args)
        return real(*args)

    monkeypatch.setattr(openai_client, "add_items", add_items)
    return writes


def ran(thread, outcome):
    """The history row of the worker run that ended with `outcome`."""
    return thread.history.exclude(action=Attempt.Action.FETCH).get(outcome=outcome)


def frozen_worker(make_worker, **overrides):
    return make_worker(name="frozen", clock=time.time, lease_seconds=LEASE, **overrides)


# --- a worker frozen past its lease -------------------------------------------------------------
class SlotAfterAWait:
    """A budget whose second slot comes after a wait (where the worker then freezes)."""

    def __init__(self):
        self.calls = 0
        self.clock = time.time

    def reserve(self):
        self.calls += 1
        return 5.0 if self.calls == 2 else 0.0

    def slow_down(self, seconds):
        pass


def test_a_worker_frozen_waiting_for_its_slot_writes_nothing_after_the_takeover(
    sandbox, make_worker, clock
):
    thread = register(sandbox, minimum=30)

    def freeze_past_the_lease(seconds):
        clock.shift(LEASE * 3)
        expire_lease(thread)
        assert upload.migrate_thread(thread.pk, make_worker(name="next")) == "succeeded"

    worker = frozen_worker(make_worker, limiter=SlotAfterAWait(), sleeper=freeze_past_the_lease)
    assert upload.migrate_thread(thread.pk, worker) == "abandoned"
    assert_exactly_once(sandbox, thread)
    batches = -(-thread.items_total // 20)
    assert sandbox.state.request_counts["POST create_items"] == batches, "no write after thawing"
    stopped = ran(thread, "abandoned")
    assert "lease was taken over" in stopped.error_message


def test_a_write_applied_before_the_freeze_is_adopted_by_the_next_worker(
    sandbox, make_worker, clock, monkeypatch
):
    thread = register(sandbox, minimum=30)

    def applied_then_frozen(real, args):
        written = real(*args)
        clock.shift(LEASE * 3)
        expire_lease(thread)
        assert upload.migrate_thread(thread.pk, make_worker(name="next")) == "succeeded"
        return written

    on_write(monkeypatch, 2, applied_then_frozen)
    assert upload.migrate_thread(thread.pk, frozen_worker(make_worker)) == "abandoned"
    assert_exactly_once(sandbox, thread)
    message = ran(thread, "abandoned").error_message
    assert "checked it again: succeeded, 0 copies taken back" in message


def test_a_write_sent_after_the_takeover_is_taken_back(sandbox, make_worker, clock, monkeypatch):
    thread = register(sandbox, minimum=30)

    def frozen_between_check_and_send(real, args):
        clock.shift(LEASE * 3)
        expire_lease(thread)
        assert upload.migrate_thread(thread.pk, make_worker(name="next")) == "succeeded"
        with openai_client.guarded_writes(None):  # the check already passed before the freeze
            return real(*args)

    writes = on_write(monkeypatch, 2, frozen_between_check_and_send)
    assert upload.migrate_thread(thread.pk, frozen_worker(make_worker)) == "abandoned"
    assert_exactly_once(sandbox, thread)
    late = len(writes[1][2])
    message = ran(thread, "abandoned").error_message
    assert f"checked it again: succeeded, {late} copies taken back" in message


def test_the_write_guard_stops_a_thawed_worker_before_its_request_leaves(
    sandbox, make_worker, clock, monkeypatch
):
    thread = register(sandbox, minimum=30)

    def thawed_after_the_lease_checks(real, args):
        clock.shift(LEASE * 3)
        expire_lease(thread)
        assert upload.migrate_thread(thread.pk, make_worker(name="next")) == "succeeded"
        return real(*args)  # the HTTP client's guard looks at the lease once more

    on_write(monkeypatch, 2, thawed_after_the_lease_checks)
    assert upload.migrate_thread(thread.pk, frozen_worker(make_worker)) == "abandoned"
    assert_exactly_once(sandbox, thread)
    assert sandbox.state.request_counts["POST create_items"] == -(-thread.items_total // 20)


def claim(thread, start, count=20, after="", reason=WriteClaim.Reason.AMBIGUOUS):
    """A write the engine would have claimed (its answer lost, or in flight at a takeover)."""
    thread.refresh_from_db()
    states.record_claim(thread.pk, thread.conversation_id, start=start, count=count,
                        after_item_id=after, owner="frozen#1", reason=reason)  # fmt: skip


def unique_items(items, count):
    """Indexes of `count` items whose content appears once in the thread (a copy of them can
    only be a copy of that one item)."""
    fingerprints = [item_fingerprint(item) for item in items]
    return [i for i, f in enumerate(fingerprints) if fingerprints.count(f) == 1][:count]


def test_claimed_copies_found_when_verifying_are_taken_back(sandbox, make_worker, monkeypatch):
    thread = register(sandbox, minimum=25)
    real_verify = upload.verify

    def late_copies_then_verify(run, items):
        # A worker that lost its lease wrote three of the items again; its write was claimed.
        claim(thread, start=0)
        run.claim_seq = states.claim_seq(thread.pk)
        sandbox.state.add_items(run.thread.conversation_id, items[:3])
        return real_verify(run, items)

    monkeypatch.setattr(upload, "verify", late_copies_then_verify)
    assert upload.migrate_thread(thread.pk, make_worker()) == "succeeded"
    assert_exactly_once(sandbox, thread)
    assert ran(thread, "succeeded").detail["copies_taken_back"] == 3


def test_copies_no_claim_accounts_for_are_a_conflict_and_stay(sandbox, make_worker, monkeypatch):
    """Provenance: content alone never makes an item a copy. An item the customer's application
    appended that happens to equal one of the thread's is not deleted."""
    thread = register(sandbox, minimum=25)
    real_verify = upload.verify
    appended = []

    def someone_appends_then_verify(run, items):
        appended.extend(items[i] for i in unique_items(items, 2))
        sandbox.state.add_items(run.thread.conversation_id, appended)
        return real_verify(run, items)

    monkeypatch.setattr(upload, "verify", someone_appends_then_verify)
    assert upload.migrate_thread(thread.pk, make_worker()) == "failed"
    thread.refresh_from_db()
    assert thread.error_kind == ErrorKind.CONFLICT
    assert "2 item(s) the console did not write" in thread.error_message
    assert "Nothing was deleted" in thread.error_message
    stored = sandbox.state.conversations[thread.conversation_id]["items"]
    assert len(stored) == thread.items_total + 2
    assert sandbox.state.request_counts["DELETE delete_item"] == 0


class WorkerDied(BaseException):
    """Stands in for SIGKILL: nothing after it runs, no except clause sees it."""


def die_after_first_batch(monkeypatch):
    real = states.record_progress

    def record_then_die(*args):
        real(*args)
        raise WorkerDied

    monkeypatch.setattr(states, "record_progress", record_then_die)
    return lambda: monkeypatch.setattr(states, "record_progress", real)


def test_copies_found_when_resuming_are_taken_back_and_the_rest_adopted(
    sandbox, make_worker, monkeypatch
):
    thread = register(sandbox, minimum=30)
    revive = die_after_first_batch(monkeypatch)
    with pytest.raises(WorkerDied):
        upload.migrate_thread(thread.pk, make_worker(name="dead"))
    revive()
    thread.refresh_from_db()
    items = preview_thread(thread).items
    # The dead worker's first batch had been sent once before, its answer lost (claimed).
    claim(thread, start=0)
    older = unique_items(items[:20], 2)
    sandbox.state.add_items(thread.conversation_id, [items[i] for i in older])  # that copy
    sandbox.state.add_items(thread.conversation_id, items[20:40])  # an applied, unrecorded batch
    expire_lease(thread)  # the next worker claims the batch in flight as it takes over
    assert upload.migrate_thread(thread.pk, make_worker(name="next")) == "succeeded"
    assert_exactly_once(sandbox, thread)
    assert ran(thread, "succeeded").detail["copies_taken_back"] == 2


def test_a_resume_whose_cursor_item_is_gone_lists_from_the_start(sandbox, make_worker, monkeypatch):
    thread = register(sandbox, minimum=30)
    revive = die_after_first_batch(monkeypatch)
    with pytest.raises(WorkerDied):
        upload.migrate_thread(thread.pk, make_worker(name="dead"))
    revive()
    thread.refresh_from_db()
    stored = sandbox.state.conversations[thread.conversation_id]["items"]
    # The recorded last item is gone (an earlier release's verify deleted it, keeping a copy).
    copy = {**stored[-1], "id": "msg_copy_of_the_last"}
    stored[-1] = copy
    expire_lease(thread)
    assert upload.migrate_thread(thread.pk, make_worker(name="next")) == "succeeded"
    assert_exactly_once(sandbox, thread)
    thread.refresh_from_db()
    assert (
        thread.last_item_id
        == sandbox.state.conversations[thread.conversation_id]["items"][-1]["id"]
    )


def test_a_lease_is_renewed_only_when_it_would_not_outlive_the_request(clock):
    thread = Thread.objects.create(thread_id="thread_lease", status=ThreadStatus.QUEUED)
    lease = states.take(thread.pk, "w#1", 60, clock=time.time)
    with CaptureQueriesContext(connection) as queries:
        states.hold(lease, 10)
    assert not queries.captured_queries, "a fresh lease needs no write"
    clock.shift(55)
    with CaptureQueriesContext(connection) as queries:
        states.hold(lease, 10)
    assert len(queries.captured_queries) == 1
    assert lease.remaining() == 60
    Thread.objects.filter(pk=thread.pk).update(lease_owner="other#2")
    clock.shift(55)
    with pytest.raises(states.LeaseLost):
        states.hold(lease, 10)


def test_the_lease_is_timed_by_the_database_clock():
    thread = Thread.objects.create(thread_id="thread_clock", status=ThreadStatus.QUEUED)
    with time_machine.travel(datetime(2001, 1, 1, tzinfo=UTC)):
        states.take(thread.pk, "w#1", 60)
    thread.refresh_from_db()
    assert thread.lease_expires_at > timezone.now() + timedelta(seconds=50)


def test_a_lease_shorter_than_twice_the_timeout_is_refused(settings):
    from migrations_app.checks import check_lease_outlives_requests

    settings.API_TIMEOUT_SECONDS, settings.MIGRATION_LEASE_SECONDS = 60, 100
    assert [e.id for e in check_lease_outlives_requests(None)] == ["migrations_app.E004"]
    settings.MIGRATION_LEASE_SECONDS = 120
    assert check_lease_outlives_requests(None) == []


# --- stale writers ------------------------------------------------------------------------------
def test_a_stale_fetch_failure_cannot_overwrite_a_running_thread():
    thread = Thread.objects.create(thread_id="thread_busy", status=ThreadStatus.QUEUED)
    states.take(thread.pk, "w#1", 60)
    failure = ApiFailure(ErrorKind.NOT_FOUND, "gone", 404)
    assert states.fetch_failed(thread.pk, failure) is False
    thread.refresh_from_db()
    assert (thread.status, thread.error_kind, thread.lease_owner) == ("running", "", "w#1")


def test_a_worker_that_lost_its_lease_records_nothing():
    thread = Thread.objects.create(thread_id="thread_taken", status=ThreadStatus.QUEUED)
    lease = states.take(thread.pk, "w#1", 60)
    expire_lease(thread)
    assert states.take(thread.pk, "w#2", 60) is not None
    for write in (
        lambda: states.record_progress(lease, 5, "msg_5"),
        lambda: states.set_totals(lease, 9, 9),
        lambda: states.start_conversation(lease, "conv_late", {}),
        lambda: states.succeed(lease, 0, 5),
        lambda: states.fail(lease, 0, ApiFailure(ErrorKind.TRANSIENT, "x")),
    ):
        with pytest.raises(states.LeaseLost):
            write()
    thread.refresh_from_db()
    assert (thread.status, thread.lease_owner, thread.items_committed) == ("running", "w#2", 0)
    assert thread.conversation_id == "" and not thread.conversations.exists()


# --- nothing stays queued, running or started without a worker -----------------------------------
def test_a_queued_thread_whose_task_is_gone_is_queued_again():
    thread = Thread.objects.create(thread_id="thread_orphan")
    actions.apply("migrate", Thread.objects.all())
    assert states.sweep("resume").requeued == 0, "its task is still there"
    OrmQ.objects.all().delete()  # purged from the queue, or acknowledged without running it
    assert states.sweep("resume").requeued == 1
    thread.refresh_from_db()
    assert thread.status == ThreadStatus.QUEUED
    assert OrmQ.objects.get().pk == thread.queued_task
    assert OrmQ.objects.get().task["args"][0] == [thread.pk]


def test_a_queued_thread_whose_task_a_dead_cluster_took_is_queued_again_after_a_lease(settings):
    """django-q2 delivers a task again only after Q_RETRY (12 minutes) once a cluster took it:
    the threads of a cluster that was killed holding their task wait no longer than a lease."""
    thread = Thread.objects.create(thread_id="thread_stranded")
    actions.apply("migrate", Thread.objects.all())
    task = OrmQ.objects.get()
    retry, lease = settings.Q_CLUSTER["retry"], settings.MIGRATION_LEASE_SECONDS
    OrmQ.objects.update(lock=timezone.now() + timedelta(seconds=retry))  # taken just now
    assert states.sweep("resume").requeued == 0, "its cluster may be starting it"
    OrmQ.objects.update(lock=timezone.now() + timedelta(seconds=retry - lease - 1))
    assert states.sweep("resume").requeued == 1, "taken over a lease ago, still queued"
    thread.refresh_from_db()
    assert thread.status == ThreadStatus.QUEUED
    assert thread.queued_task != task.pk
    assert OrmQ.objects.get(pk=thread.queued_task).task["args"][0] == [thread.pk]


def test_a_queued_thread_that_names_no_task_is_queued_again_after_a_lease(settings):
    """Queued by a release from before the thread kept its task (an upgrade mid-migration)."""
    thread = Thread.objects.create(thread_id="thread_old_release")
    actions.apply("migrate", Thread.objects.all())
    OrmQ.objects.all().delete()
    Thread.objects.update(queued_task=None)
    assert states.sweep("resume").requeued == 0, "it may just have been queued"
    lease = settings.MIGRATION_LEASE_SECONDS
    Thread.objects.update(updated_at=timezone.now() - timedelta(seconds=lease + 1))
    assert states.sweep("resume").requeued == 1
    thread.refresh_from_db()
    assert OrmQ.objects.get().pk == thread.queued_task


def test_per_thread_tasks_are_kept_after_they_fail_but_not_after_they_succeed():
    """django-q2 prunes saved successes by loading them all at every save: a migration's tasks
    would make that cost grow with the migration. Their failures are kept for staff."""
    from django_q.brokers import get_broker
    from django_q.models import Failure, Success
    from django_q.monitor import save_task

    Thread.objects.create(thread_id="thread_task_a")
    actions.apply("migrate", Thread.objects.all())
    intake.queue_fetches(["thread_task_b"], group="fetch")
    packages = [row.task for row in OrmQ.objects.all()]
    assert [package.get("save") for package in packages] == [False, False]
    # "sync": the monitor would otherwise close the test's database connection first.
    stamp = {"started": timezone.now(), "stopped": timezone.now(), "result": None, "sync": True}
    for package in packages:
        save_task({**package, **stamp, "success": True}, get_broker())
    assert not Success.objects.exists()
    save_task({**packages[0], **stamp, "success": False, "result": "boom"}, get_broker())
    assert Failure.objects.get().result == "boom"


def test_threads_an_interrupted_inline_run_queued_go_to_the_workers():
    thread = Thread.objects.create(thread_id="thread_inline")
    actions.apply("migrate", Thread.objects.all(), enqueue=False)
    assert states.sweep("resume").requeued == 0, "the inline run may still take it"
    Thread.objects.update(updated_at=timezone.now() - timedelta(hours=1))
    assert states.sweep("resume").requeued == 1
    thread.refresh_from_db()
    assert thread.queued_task == OrmQ.objects.get().pk


def test_an_inline_run_stopped_by_ctrl_c_hands_what_it_queued_to_the_workers(
    sandbox, monkeypatch, capsys
):
    for index in range(3):
        Thread.objects.create(thread_id=f"thread_cli{index}")

    def interrupted(pks, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(upload, "migrate_many", interrupted)
    with pytest.raises(KeyboardInterrupt):
        call_command("migrate_threads", "--all", "--inline")
    assert "3 threads handed to the queue" in capsys.readouterr().err
    assert set(Thread.objects.values_list("status", flat=True)) == {ThreadStatus.QUEUED}
    assert not Thread.objects.filter(queued_task=states.RUN_INLINE).exists()


def test_attempts_of_a_dead_worker_are_closed_as_abandoned():
    thread = Thread.objects.create(thread_id="thread_dead", status=ThreadStatus.QUEUED)
    lease = states.take(thread.pk, "w#1", 60)
    attempt = states.open_attempt(lease, Attempt.Action.MIGRATE, "worker w")
    expire_lease(thread)
    swept = states.sweep("resume")
    assert (swept.resumed, swept.abandoned) == (1, 0)
    attempt.refresh_from_db()
    assert attempt.outcome == Attempt.Outcome.ABANDONED
    assert "lease expired" in attempt.error_message


# --- every failure has its remedy ---------------------------------------------------------------
def make_conflict(sandbox, make_worker, monkeypatch):
    thread = register(sandbox, minimum=30)
    revive = die_after_first_batch(monkeypatch)
    with pytest.raises(WorkerDied):
        upload.migrate_thread(thread.pk, make_worker())
    revive()
    thread.refresh_from_db()
    sandbox.state.add_items(
        thread.conversation_id, [{"type": "message", "role": "user", "content": "someone else"}]
    )
    expire_lease(thread)
    upload.migrate_thread(thread.pk, make_worker())
    thread.refresh_from_db()
    assert (thread.status, thread.error_kind) == (ThreadStatus.FAILED, ErrorKind.CONFLICT)
    return thread


def test_a_conflict_is_recovered_by_re_migrating_from_the_thread_page(
    sandbox, make_worker, monkeypatch, admin_client
):
    thread = make_conflict(sandbox, make_worker, monkeypatch)
    old = thread.conversation_id
    page = admin_client.get(reverse("admin:migrations_app_thread_change", args=[thread.pk]))
    assert 'name="button-remigrate"' in page.content.decode()
    assert 'name="button-retry"' not in page.content.decode()
    act = reverse("admin:migrations_app_thread_act", args=[thread.pk, "remigrate"])
    confirm = admin_client.post(act)
    assert "Re-migrate" in confirm.content.decode()
    assert admin_client.post(act, {"post": "yes"}).status_code == 302
    assert upload.migrate_thread(thread.pk, make_worker()) == "succeeded"
    assert_exactly_once(sandbox, thread)
    assert thread.conversation_id != old
    assert thread.conversations.get(conversation_id=old).replaced_at is not None


def test_a_thread_not_found_at_the_source_is_offered_fetch_not_retry(sandbox, make_worker):
    thread = Thread.objects.create(thread_id="thread_gone")
    queue(thread)
    upload.migrate_thread(thread.pk, make_worker())
    assert states.applicable_actions(thread.pk) == {"fetch"}
    plan = actions.plan("retry", Thread.objects.filter(pk=thread.pk))
    assert plan.eligible == 0
    assert list(plan.skipped) == [
        "not found at the source (fetch again once the id or source is fixed)"
    ]
    thread.refresh_from_db()
    assert "fetch it again" in states.remedy(thread)


def test_a_retry_resumes_with_the_options_the_upload_started_with(
    sandbox, make_worker, monkeypatch, settings
):
    thread = next(
        t
        for t in (register(sandbox, minimum=25, queued=False) for _ in range(30))
        if any(m["attachments"] for m in sandbox.state.messages[t.thread_id][:20])
    )
    queue(thread)
    revive = die_after_first_batch(monkeypatch)
    with pytest.raises(WorkerDied):
        upload.migrate_thread(thread.pk, make_worker())
    revive()
    settings.MIGRATE_ATTACHMENTS = False  # changed between attempts
    expire_lease(thread)
    assert upload.migrate_thread(thread.pk, make_worker()) == "succeeded"
    thread.refresh_from_db()
    live = thread.conversations.live().get()
    assert live.options["attachments"] is True
    stored = sandbox.state.conversations[live.conversation_id]["items"]
    expected = preview_thread(thread, Options(**live.options)).items
    assert len(stored) == len(expected) == thread.items_total
    assert any(p["type"] == "input_file" for i in stored for p in i.get("content", []))
    # A re-migrate takes the settings as they are now.
    queue(thread, "remigrate")
    assert upload.migrate_thread(thread.pk, make_worker()) == "succeeded"
    thread.refresh_from_db()
    assert thread.conversations.live().get().options == dataclasses.asdict(
        Options(attachments=False)
    )
    assert_exactly_once(sandbox, thread)


def test_a_migrate_of_a_failed_thread_is_recorded_as_migrate(sandbox, make_worker):
    thread = register(sandbox, minimum=3, queued=False)
    Thread.objects.filter(pk=thread.pk).update(status=ThreadStatus.FAILED, error_kind="transient")
    queue(thread, "migrate")
    upload.migrate_thread(thread.pk, make_worker())
    assert ran(thread, "succeeded").action == Attempt.Action.MIGRATE


# --- requests ----------------------------------------------------------------------------------
def test_a_batch_refused_as_too_large_is_split(sandbox, make_worker):
    thread = register(sandbox, minimum=30)
    items = preview_thread(thread).items
    biggest = max(len(orjson.dumps(i)) for i in items)
    sandbox.state.configure_faults(max_body_bytes=biggest * 4 + 100)
    assert upload.migrate_thread(thread.pk, make_worker()) == "succeeded"
    assert_exactly_once(sandbox, thread)
    assert sandbox.state.fault_counts["too_large"] > 0


def test_a_single_item_too_large_fails_the_thread_with_that_reason(sandbox, make_worker):
    thread = register(sandbox, minimum=3)
    items = preview_thread(thread).items
    sandbox.state.configure_faults(max_body_bytes=min(len(orjson.dumps(i)) for i in items) + 30)
    assert upload.migrate_thread(thread.pk, make_worker()) == "failed"
    thread.refresh_from_db()
    assert thread.error_kind == ErrorKind.TOO_LARGE
    assert re.match(r"Item \d+ of \d+ is too large for the API, even alone", thread.error_message)


def test_after_an_ambiguous_write_the_worker_backs_off_before_looking(
    sandbox, make_worker, monkeypatch
):
    thread = register(sandbox, minimum=25)
    script(sandbox, {"kind": "server_error", "path_contains": "/items"})
    events = []
    real_pages = upload.item_pages
    monkeypatch.setattr(
        upload,
        "item_pages",
        lambda *args, **kwargs: events.append("look") or real_pages(*args, **kwargs),
    )
    worker = make_worker(sleeper=lambda seconds: events.append(seconds))
    upload.migrate_thread(thread.pk, worker)
    looked = events.index("look")
    assert events[looked - 1] >= upload.LOOK_AFTER_SECONDS, "a real wait before looking"
    assert_exactly_once(sandbox, thread)


# --- the sweeper's own health ------------------------------------------------------------------
def test_the_sweeper_schedule_is_recreated_at_migrate_and_its_absence_flagged_before():
    from django.core import checks as django_checks
    from django_q.models import Schedule

    from migrations_app.apps import SWEEPER

    Schedule.objects.filter(func=SWEEPER).delete()
    found = django_checks.run_checks(databases=["default"], tags=[django_checks.Tags.database])
    assert "migrations_app.W010" in [message.id for message in found]
    call_command("migrate", verbosity=0)
    assert Schedule.objects.filter(func=SWEEPER).exists()


def test_a_late_sweep_is_flagged_while_threads_wait():
    from django.core import checks as django_checks

    from migrations_app.models import Heartbeat

    def flagged():
        found = django_checks.run_checks(databases=["default"], tags=[django_checks.Tags.database])
        return "migrations_app.W011" in [message.id for message in found]

    assert not flagged(), "nothing waits"
    Thread.objects.create(thread_id="thread_waiting", status=ThreadStatus.QUEUED)
    assert flagged(), "it never ran"
    Heartbeat.objects.create(name="sweep", last_finished=timezone.now())
    assert not flagged()
    Heartbeat.objects.update(last_finished=timezone.now() - timedelta(minutes=4))
    assert flagged()


def test_one_process_claims_the_sweep_each_minute_however_many_offer():
    from migrations_app import tasks

    assert "resumed" in tasks.sweep_stuck_threads()
    assert "skipped" in tasks.sweep_stuck_threads(), "a second offer within the minute"


def test_a_write_the_server_applies_after_the_owner_verified_is_taken_back_by_the_recheck(
    sandbox, make_worker, settings
):
    """The server held a write past the client's deadline, then applied it and the answer was
    lost: the owner resent the batch and verified before the held one landed. Within a lease of
    its claim, the sweeper verifies the thread once more and takes the copy back."""
    settings.API_TIMEOUT_SECONDS = 1
    thread = register(sandbox, minimum=30)
    sandbox.state.configure_faults(
        slow_seconds=2,
        scripted=[{"kind": "slow_drop_after_write", "method": "POST", "path_contains": "/items"}],
    )
    assert upload.migrate_thread(thread.pk, make_worker()) == "succeeded"
    thread.refresh_from_db()
    stored = sandbox.state.conversations[thread.conversation_id]["items"]
    wait_until(lambda: len(stored) > thread.items_total, timeout=10, what="the held write")
    # A lease later (the recheck's horizon), as the sweeper finds it:
    claimed = timezone.now() - timedelta(hours=1)
    WriteClaim.objects.update(created_at=claimed)
    thread.conversations.update(verified_at=claimed + timedelta(seconds=5))
    assert upload.recheck_claims(worker=make_worker()) == 1
    assert_exactly_once(sandbox, thread)
    assert thread.history.get(action="repair").detail["copies_taken_back"] > 0
    assert upload.recheck_claims(worker=make_worker()) == 0, "checked once"

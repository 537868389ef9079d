"""The migration engine against the sandbox, in-process. Every result is checked against the
sandbox's own state, not the console's counters."""

import threading

import openai
import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import OrmQ

from migrations_app import actions, openai_client, states, upload
from migrations_app.models import Attempt, ErrorKind, RateLimit, Thread, ThreadStatus
from migrations_app.preview import preview_thread
from migrations_app.ratelimit import SharedRateLimiter
from tests import checks
from tests.engine import queue, register, script
from tests.factories import source_message, source_thread

pytestmark = pytest.mark.django_db


def assert_migrated_exactly_once(sandbox, thread):
    checks.assert_migrated_exactly_once(sandbox.state, thread)
    checks.assert_no_orphan_holds_items(sandbox.state)


def test_a_thread_migrates_into_one_verified_conversation(sandbox, make_worker):
    thread = register(sandbox, minimum=30)
    assert upload.migrate_thread(thread.pk, make_worker()) == Attempt.Outcome.SUCCEEDED
    assert_migrated_exactly_once(sandbox, thread)
    metadata = sandbox.state.conversations[thread.conversations.get().conversation_id]
    assert metadata["object"]["metadata"]["source_thread_id"] == thread.thread_id
    attempt = thread.history.get(action=Attempt.Action.MIGRATE, outcome="succeeded")
    assert attempt.conversation_id == thread.conversations.get().conversation_id


@pytest.mark.parametrize("count", [1, 20, 21, 100, 250])
def test_requests_per_thread_are_the_minimum_the_endpoints_allow(sandbox, make_worker, count):
    sandbox.state.threads["thread_sized"] = source_thread("thread_sized")
    sandbox.state.messages["thread_sized"] = [
        source_message(f"msg_{i:04d}", "thread_sized", f"m{i}", created_at=i) for i in range(count)
    ]
    sandbox.state.runs["thread_sized"] = []
    thread = register(sandbox, thread_id="thread_sized")
    upload.migrate_thread(thread.pk, make_worker())
    assert_migrated_exactly_once(sandbox, thread)
    counts = sandbox.state.request_counts
    assert counts["POST create_conversation"] == 1
    assert counts["POST create_items"] == -(-count // 20)
    assert counts["GET list_items"] == max(1, -(-count // 100))
    assert sum(counts.values()) == 1 + -(-count // 20) + max(1, -(-count // 100))


def test_a_thread_not_yet_fetched_is_fetched_first(sandbox, make_worker):
    thread = register(sandbox, minimum=3, fetched=False)
    upload.migrate_thread(thread.pk, make_worker())
    assert_migrated_exactly_once(sandbox, thread)


def test_a_429_storm_slows_every_worker_and_loses_nothing(sandbox, make_worker):
    thread = register(sandbox, minimum=30)
    script(sandbox, {"kind": "rate_limit", "path_contains": "/items", "times": 5})
    sandbox.state.configure_faults(retry_after_seconds=3)
    upload.migrate_thread(thread.pk, make_worker())
    assert_migrated_exactly_once(sandbox, thread)
    assert RateLimit.objects.get(name="api").throttled_total == 5
    assert sandbox.state.fault_counts["rate_limit"] == 5


def test_a_5xx_on_a_batch_is_checked_then_sent_again_once(sandbox, make_worker, slept):
    thread = register(sandbox, minimum=25)
    script(sandbox, {"kind": "server_error", "path_contains": "/items"})
    upload.migrate_thread(thread.pk, make_worker())
    assert_migrated_exactly_once(sandbox, thread)
    assert any(wait > 0 for wait in slept), "backed off before sending again"


def test_a_dropped_create_before_the_write_leaves_nothing_behind(sandbox, make_worker):
    thread = register(sandbox, minimum=5)
    script(sandbox, {"kind": "drop_before_write", "path_contains": "/conversations"})
    upload.migrate_thread(thread.pk, make_worker())
    assert_migrated_exactly_once(sandbox, thread)
    assert len(sandbox.state.conversations) == 1


def test_a_create_applied_then_dropped_leaves_at_most_an_empty_conversation(sandbox, make_worker):
    thread = register(sandbox, minimum=5)
    sandbox.state.configure_faults(
        scripted=[
            {
                "kind": "drop_after_write",
                "method": "POST",
                "path_contains": "/v1/conversations",
                "times": 1,
            }
        ]
    )
    # The scripted fault matches the create (the first POST) only.
    upload.migrate_thread(thread.pk, make_worker())
    assert_migrated_exactly_once(sandbox, thread)
    empty = [c for c in sandbox.state.conversations.values() if not c["items"]]
    assert len(sandbox.state.conversations) == 2 and len(empty) == 1


def test_items_applied_then_dropped_are_found_and_not_sent_again(sandbox, make_worker):
    thread = register(sandbox, minimum=30)
    script(sandbox, {"kind": "drop_after_write", "path_contains": "/items", "times": 2})
    upload.migrate_thread(thread.pk, make_worker())
    assert_migrated_exactly_once(sandbox, thread)
    assert sandbox.state.fault_counts["drop_after_write"] == 2
    assert sandbox.state.request_counts["POST create_items"] == -(-thread.items_total // 20)


def test_items_dropped_before_the_write_are_sent_again(sandbox, make_worker):
    thread = register(sandbox, minimum=25)
    script(sandbox, {"kind": "drop_before_write", "path_contains": "/items"})
    upload.migrate_thread(thread.pk, make_worker())
    assert_migrated_exactly_once(sandbox, thread)


def test_a_permanent_error_fails_at_once_and_a_retry_resumes(sandbox, make_worker, monkeypatch):
    thread = register(sandbox, minimum=30)
    sandbox.state.configure_faults(
        scripted=[
            {"kind": "auth_error", "method": "POST", "path_contains": "/items", "times": 0},
        ]
    )
    worker = make_worker()
    real_add = upload.openai_client.add_items
    calls = []

    def create_then_refuse(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            sandbox.state.faults.scripted[0]["times"] = 1  # the key is revoked mid-thread
        return real_add(*args, **kwargs)

    monkeypatch.setattr(upload.openai_client, "add_items", create_then_refuse)
    assert upload.migrate_thread(thread.pk, worker) == Attempt.Outcome.FAILED
    thread.refresh_from_db()
    assert thread.status == ThreadStatus.FAILED
    assert thread.error_kind == ErrorKind.AUTH
    assert thread.error_http_status == 401
    assert "API key was refused" in thread.error_message
    assert thread.items_committed == 20
    assert sandbox.state.request_counts["POST create_items"] == 2, "no retry on a 401"
    conversation_id = thread.conversations.get().conversation_id
    # The cause is fixed; staff retry. The upload resumes in the same conversation.
    queue(thread, "retry")
    upload.migrate_thread(thread.pk, make_worker())
    assert_migrated_exactly_once(sandbox, thread)
    assert thread.conversations.get().conversation_id == conversation_id
    assert sandbox.state.request_counts["POST create_conversation"] == 1


def test_transient_errors_beyond_the_limit_fail_the_thread_resumably(sandbox, make_worker):
    thread = register(sandbox, minimum=25)
    script(sandbox, {"kind": "server_error", "path_contains": "/items", "times": 99})
    upload.migrate_thread(thread.pk, make_worker(max_retries=2))
    thread.refresh_from_db()
    assert (thread.status, thread.error_kind) == (ThreadStatus.FAILED, ErrorKind.TRANSIENT)
    assert "server error (HTTP 500)" in thread.error_message
    assert thread.error_request_id.startswith("req_")
    sandbox.state.configure_faults(scripted=[])
    queue(thread, "retry")
    upload.migrate_thread(thread.pk, make_worker())
    assert_migrated_exactly_once(sandbox, thread)


def test_a_live_lease_keeps_a_second_worker_off(sandbox, make_worker):
    thread = register(sandbox, minimum=3)
    assert states.take(thread.pk, "first#1", 60) is not None
    assert upload.migrate_thread(thread.pk, make_worker(name="second")) == "skipped"
    assert sum(sandbox.state.request_counts.values()) == 0


class WorkerDied(BaseException):
    """Stands in for SIGKILL: nothing after it runs, no except clause sees it."""


def test_a_worker_that_died_mid_thread_is_resumed_without_duplicates(
    sandbox, make_worker, monkeypatch
):
    thread = register(sandbox, minimum=40)
    real = states.record_progress
    recorded = []

    def die_after_the_second_batch_is_applied(*args):
        recorded.append(1)
        if len(recorded) == 2:
            raise WorkerDied  # the server has batch 2; our database never hears of it
        return real(*args)

    monkeypatch.setattr(states, "record_progress", die_after_the_second_batch_is_applied)
    with pytest.raises(WorkerDied):
        upload.migrate_thread(thread.pk, make_worker(name="dead"))
    monkeypatch.setattr(states, "record_progress", real)
    thread.refresh_from_db()
    assert (thread.status, thread.items_committed) == (ThreadStatus.RUNNING, 20)
    assert upload.migrate_thread(thread.pk, make_worker(name="early")) == "skipped"
    Thread.objects.filter(pk=thread.pk).update(lease_expires_at=timezone.now())
    assert states.sweep("resume").resumed == 1
    assert upload.migrate_thread(thread.pk, make_worker(name="next")) == "succeeded"
    assert_migrated_exactly_once(sandbox, thread)
    assert sandbox.state.request_counts["POST create_conversation"] == 1


@pytest.mark.django_db(transaction=True)
def test_workers_racing_for_one_thread_upload_it_once(sandbox, make_worker, settings):
    thread = register(sandbox, minimum=30)
    outcomes = upload.migrate_many(
        [thread.pk] * 4, concurrency=4, worker_factory=lambda client: make_worker()
    )
    assert outcomes == {"succeeded": 1, "skipped": 3}
    assert_migrated_exactly_once(sandbox, thread)
    assert len(sandbox.state.conversations) == 1


def test_a_migrated_thread_is_not_uploaded_again_unless_remigrated(sandbox, make_worker):
    thread = register(sandbox, minimum=3)
    upload.migrate_thread(thread.pk, make_worker())
    plan = actions.plan("migrate", Thread.objects.filter(pk=thread.pk))
    assert plan.eligible == 0
    assert plan.skipped == {"already migrated (use re-migrate to create a new conversation)": 1}
    assert upload.migrate_thread(thread.pk, make_worker()) == "skipped"
    old = thread.conversations.get().conversation_id
    queue(thread, "remigrate")
    upload.migrate_thread(thread.pk, make_worker())
    assert_migrated_exactly_once(sandbox, thread)
    new = thread.conversations.live().get().conversation_id
    assert new != old
    assert thread.conversations.get(conversation_id=old).replaced_at is not None
    queued = thread.history.get(action=Attempt.Action.REMIGRATE, outcome="queued")
    assert queued.conversation_id == old
    ran = thread.history.get(action=Attempt.Action.REMIGRATE, outcome="succeeded")
    assert ran.conversation_id == new


def test_a_conversation_changed_outside_the_console_is_a_conflict(
    sandbox, make_worker, monkeypatch
):
    thread = register(sandbox, minimum=30)
    real = states.record_progress

    def stop_after_first_batch(*args):
        real(*args)
        raise WorkerDied

    monkeypatch.setattr(states, "record_progress", stop_after_first_batch)
    with pytest.raises(WorkerDied):
        upload.migrate_thread(thread.pk, make_worker())
    monkeypatch.setattr(states, "record_progress", real)
    conversation_id = thread.conversations.get().conversation_id
    sandbox.state.add_items(
        conversation_id, [{"type": "message", "role": "user", "content": "added by someone else"}]
    )
    Thread.objects.filter(pk=thread.pk).update(lease_expires_at=timezone.now())
    upload.migrate_thread(thread.pk, make_worker())
    thread.refresh_from_db()
    assert (thread.status, thread.error_kind) == (ThreadStatus.FAILED, ErrorKind.CONFLICT)
    assert "changed outside the console" in thread.error_message


# --- queueing -------------------------------------------------------------------------------------
def test_queueing_groups_threads_into_tasks_named_after_the_batch(sandbox, settings):
    settings.MIGRATION_TASK_GROUP_SIZE = 3
    pks = [Thread.objects.create(thread_id=f"thread_q{i}").pk for i in range(7)]
    count, group = actions.apply("migrate", Thread.objects.filter(pk__in=pks), actor_label="t")
    assert count == 7
    tasks = [q.task for q in OrmQ.objects.all()]
    assert sorted(len(t["args"][0]) for t in tasks) == [1, 3, 3]
    assert {t["group"] for t in tasks} == {group}
    assert set(Thread.objects.values_list("status", flat=True)) == {ThreadStatus.QUEUED}


def test_cancelled_threads_are_skipped_by_their_task(sandbox, make_worker):
    thread = register(sandbox, minimum=3)
    assert actions.apply("cancel", Thread.objects.filter(pk=thread.pk))[0] == 1
    assert upload.migrate_thread(thread.pk, make_worker()) == "skipped"
    assert Thread.objects.get(pk=thread.pk).status == ThreadStatus.CANCELLED
    assert sandbox.state.conversations == {}


def test_plan_counts_every_state_with_its_reason():
    for index, status in enumerate(["pending", "failed", "succeeded", "running", "queued"]):
        Thread.objects.create(thread_id=f"thread_p{index}", status=status)
    plan = actions.plan("retry", Thread.objects.all())
    assert plan.eligible == 1
    assert plan.skipped == {
        "not failed (use migrate)": 1,
        "already migrated": 1,
        "running now": 1,
        "already queued": 1,
    }


# --- the shared rate limit ------------------------------------------------------------------------
def test_the_rate_limit_is_shared_by_every_limiter_instance():
    clock = [1000.0]
    one, two = (
        SharedRateLimiter(per_minute=60, clock=lambda: clock[0], shared_clock=lambda: clock[0])
        for _ in range(2)
    )
    waits = [limiter.reserve() for limiter in (one, two, one, two)]
    assert waits == [0.0, 1.0, 2.0, 3.0]  # one request per second between them
    two.slow_down(10)
    assert one.reserve() == pytest.approx(10.0)
    assert RateLimit.objects.get(name="api").requests_total == 5


# --- the command line -----------------------------------------------------------------------------
def test_dry_run_prints_items_and_warnings_and_sends_nothing(sandbox, capsys):
    thread = register(sandbox, minimum=10, queued=False)
    call_command("migrate_threads", thread.thread_id, "--dry-run")
    out = capsys.readouterr().out
    preview = preview_thread(thread)
    assert f"{thread.thread_id}: {len(preview.items)} items" in out
    assert out.count('"type": "message"') == sum(i["type"] == "message" for i in preview.items)
    assert sandbox.state.conversations == {}


def test_migrate_threads_without_inline_queues_and_returns(sandbox, capsys):
    thread = register(sandbox, minimum=3, queued=False)
    call_command("migrate_threads", "--all")
    assert "Queued 1 threads" in capsys.readouterr().out
    assert Thread.objects.get(pk=thread.pk).status == ThreadStatus.QUEUED
    assert OrmQ.objects.count() == 1
    assert sandbox.state.conversations == {}


@pytest.mark.django_db(transaction=True)
def test_migrate_threads_inline_migrates_and_export_mapping_reports_it(sandbox, capsys, tmp_path):
    threads = [register(sandbox, minimum=2, queued=False) for _ in range(3)]
    call_command("migrate_threads", "--all", "--inline")
    assert "Done: 3 succeeded." in capsys.readouterr().out
    for thread in threads:
        assert_migrated_exactly_once(sandbox, thread)
    out = tmp_path / "map.csv"
    call_command("export_mapping", "-o", str(out))
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    for _, conversation_id, status, items, _ in rows:
        assert status == "succeeded"
        assert len(sandbox.state.conversations[conversation_id]["items"]) == int(items)


def test_migrate_threads_refuses_unknown_ids():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="Unknown thread ids"):
        call_command("migrate_threads", "thread_nope")


def test_a_fetch_that_meets_transient_errors_is_retried_not_failed(sandbox, make_worker, slept):
    thread = register(sandbox, minimum=3, fetched=False)
    sandbox.state.configure_faults(
        scripted=[
            {"kind": "rate_limit", "method": "GET", "path_contains": "/messages", "times": 3},
            {"kind": "server_error", "method": "GET", "path_contains": "/runs", "times": 3},
        ]
    )
    source = openai.OpenAI(api_key="test", base_url=sandbox.url, max_retries=0)
    upload.migrate_thread(thread.pk, make_worker(source_client=source, max_retries=8))
    assert_migrated_exactly_once(sandbox, thread)
    assert sandbox.state.fault_counts["rate_limit"] == 3
    assert sandbox.state.fault_counts["server_error"] == 3


def test_a_fetch_that_finds_no_thread_fails_at_once(sandbox, make_worker):
    thread = Thread.objects.create(thread_id="thread_gone")
    queue(thread)
    upload.migrate_thread(thread.pk, make_worker())
    thread.refresh_from_db()
    assert (thread.status, thread.error_kind) == (ThreadStatus.FAILED, ErrorKind.NOT_FOUND)
    assert thread.error_message.startswith("Fetching from the source failed: The API does not")


# --- one round less: the conversation created during the fetch, the listing read ahead ---------
def sized_thread(sandbox, count, thread_id="thread_sized"):
    sandbox.state.threads[thread_id] = source_thread(thread_id)
    sandbox.state.messages[thread_id] = [
        source_message(f"msg_{i:04d}", thread_id, f"m{i}", created_at=i) for i in range(count)
    ]
    sandbox.state.runs[thread_id] = []
    return register(sandbox, thread_id=thread_id, fetched=False)


def test_a_conversation_created_during_the_fetch_becomes_the_threads_own(
    sandbox, make_worker, monkeypatch
):
    thread = register(sandbox, minimum=3, fetched=False)
    fetching, created_while = threading.Event(), []
    real_fetch, real_create = openai_client.fetch_thread_bundle, openai_client.create_conversation

    def fetch(*args, **kwargs):
        fetching.set()
        try:
            return real_fetch(*args, **kwargs)
        finally:
            fetching.clear()

    def create(*args, **kwargs):
        created_while.append(fetching.is_set())
        return real_create(*args, **kwargs)

    monkeypatch.setattr(openai_client, "fetch_thread_bundle", fetch)
    monkeypatch.setattr(openai_client, "create_conversation", create)
    assert upload.migrate_thread(thread.pk, make_worker()) == Attempt.Outcome.SUCCEEDED
    assert created_while == [True]
    assert_migrated_exactly_once(sandbox, thread)
    assert sandbox.state.request_counts["POST create_conversation"] == 1
    assert sandbox.state.request_counts["DELETE delete_conversation"] == 0


def test_a_fetch_refused_after_the_early_create_deletes_that_conversation(sandbox, make_worker):
    thread = sized_thread(sandbox, 5)
    # The source answers with another thread: the fetch is refused once it is complete, after
    # the conversation was created from the thread object.
    sandbox.state.threads[thread.thread_id] = source_thread("thread_someone_else")
    assert upload.migrate_thread(thread.pk, make_worker()) == Attempt.Outcome.FAILED
    thread.refresh_from_db()
    assert thread.error_kind == ErrorKind.INVALID
    assert thread.conversation_id == ""
    assert not thread.conversations.exists()
    counts = sandbox.state.request_counts
    assert (counts["POST create_conversation"], counts["DELETE delete_conversation"]) == (1, 1)
    assert set(sandbox.state.conversations) == set(), "the empty conversation was deleted"


def test_a_failed_early_create_fails_the_thread_with_its_reason(sandbox, make_worker):
    thread = register(sandbox, minimum=3, fetched=False)
    script(sandbox, {"kind": "auth_error", "path_contains": "/v1/conversations"})
    assert upload.migrate_thread(thread.pk, make_worker()) == Attempt.Outcome.FAILED
    thread.refresh_from_db()
    assert "HTTP 401" in thread.error_message
    assert thread.data is not None, "the fetch went on: the mirror is there to compare"


def test_a_long_conversation_is_verified_in_one_round_of_listings(
    sandbox, make_worker, monkeypatch
):
    thread = sized_thread(sandbox, 250)
    cursors = []
    all_at_once = threading.Barrier(3, timeout=10)  # broken if the three are read one by one
    real = openai_client.items_page

    def listed(client, conversation_id, after=None, include=()):
        cursors.append(after)
        if len(cursors) <= 3:
            all_at_once.wait()
        return real(client, conversation_id, after, include)

    monkeypatch.setattr(openai_client, "items_page", listed)
    assert upload.migrate_thread(thread.pk, make_worker()) == Attempt.Outcome.SUCCEEDED
    assert_migrated_exactly_once(sandbox, thread)
    items = sandbox.state.conversations[thread.conversation_id]["items"]
    assert sorted(cursors, key=str) == sorted([None, items[99]["id"], items[199]["id"]], key=str)


def when_committed(monkeypatch, thread, count, change):
    """Someone else `change`s the thread's conversation once the upload recorded `count` items."""
    real = states.record_progress

    def recorded(lease, committed, last_item_id):
        real(lease, committed, last_item_id)
        if committed == count:
            change(Thread.objects.get(pk=thread.pk).conversation_id)

    monkeypatch.setattr(states, "record_progress", recorded)


def test_an_item_someone_added_mid_upload_is_named_not_hidden_by_the_read_ahead(
    sandbox, make_worker, monkeypatch
):
    """A foreign item in the first page shifts every page end: the pages read ahead are set
    aside and the listing goes on page after page, so the item is named, and nothing is missed."""
    thread = sized_thread(sandbox, 250)
    foreign = {"type": "message", "role": "user", "content": "not ours"}
    when_committed(monkeypatch, thread, 60, lambda conversation: sandbox.state.add_items(
        conversation, [foreign]))  # fmt: skip
    upload.migrate_thread(thread.pk, make_worker())
    thread.refresh_from_db()
    assert (thread.status, thread.error_kind) == (ThreadStatus.FAILED, ErrorKind.CONFLICT)
    assert "holds 1 item(s) the console did not write" in thread.error_message
    assert "missing" not in thread.error_message


def test_an_item_someone_deleted_where_a_page_was_to_start_is_named_missing(
    sandbox, make_worker, monkeypatch
):
    """The page read ahead after that item is refused (its cursor is gone): it is set aside, and
    the listing read in turn names the item as missing, as a sequential listing would."""
    thread = sized_thread(sandbox, 250)
    when_committed(monkeypatch, thread, 250, lambda conversation: sandbox.state.conversations[
        conversation]["items"].pop(99))  # fmt: skip
    upload.migrate_thread(thread.pk, make_worker())
    thread.refresh_from_db()
    assert (thread.status, thread.error_kind) == (ThreadStatus.FAILED, ErrorKind.CONFLICT)
    assert "1 of its recorded item(s) missing" in thread.error_message

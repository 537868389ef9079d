"""Delta re-sync (issue 18, part 3): what users say at the source after a thread was migrated is
appended to the same conversation, exactly once; a thread whose earlier messages changed is
marked diverged and never rewritten. Checked against the sandbox's own state."""

import pytest
from django.core.management import call_command

from migrations_app import connections, sync, upload
from migrations_app.conversion import Options, convert_thread, item_fingerprint
from migrations_app.models import Thread, ThreadStatus
from tests import checks
from tests.azure import KEY, pointed_at
from tests.engine import register, script
from tests.test_azure import worker

pytestmark = pytest.mark.django_db


def migrated(server, make_worker, count=1, minimum=3, maximum=40):
    threads = []
    for _ in range(count):
        thread = register(server, minimum=minimum, maximum=maximum)
        assert upload.migrate_thread(thread.pk, make_worker()) == "succeeded"
        thread.refresh_from_db()
        threads.append(thread)
    return threads


def source_items(state, thread):
    """What the thread at the source converts to now: the conversation must hold exactly this."""
    steps = [step for run in state.runs[thread.thread_id] for step in state.steps.get(run["id"], [])
             if step.get("type") == "tool_calls"]  # fmt: skip
    return convert_thread(state.threads[thread.thread_id], state.messages[thread.thread_id],
                          steps, Options()).items  # fmt: skip


def assert_conversation_is_the_source_thread(state, thread):
    thread.refresh_from_db()
    assert thread.status == ThreadStatus.SUCCEEDED, (thread.status, thread.error_message)
    stored = state.conversations[thread.conversation_id]["items"]
    expected = source_items(state, thread)
    assert [item_fingerprint(i) for i in stored] == [item_fingerprint(i) for i in expected]
    checks.assert_migrated_exactly_once(state, thread)


def sync_here(threads, make_worker):
    """What `sync_threads` and the workers do: check, then run the syncs queued."""
    checked = sync.check_and_queue([t.pk for t in threads], group="test sync")
    for thread in Thread.objects.filter(status=ThreadStatus.QUEUED, requested_action="sync"):
        upload.migrate_thread(thread.pk, make_worker())
    return checked


# --- the check ----------------------------------------------------------------------------------
def test_a_thread_with_nothing_new_costs_one_request_and_no_state_change(sandbox, make_worker):
    (thread,) = migrated(sandbox, make_worker)
    sandbox.state.request_counts.clear()
    checked = sync_here([thread], make_worker)
    assert checked.up_to_date == [thread.pk]
    assert dict(sandbox.state.request_counts) == {"GET list_messages": 1}
    thread.refresh_from_db()
    assert thread.status == ThreadStatus.SUCCEEDED and thread.synced_at is not None
    assert not thread.history.filter(action="sync").exists()


def test_new_messages_with_tool_calls_are_appended_to_the_same_conversation(sandbox, make_worker):
    threads = migrated(sandbox, make_worker, count=3)
    before = {t.pk: t.conversation_id for t in threads}
    sandbox.state.add_turn(threads[0].thread_id, tool="function")
    sandbox.state.add_turn(threads[0].thread_id, tool=None)
    sandbox.state.add_turn(threads[2].thread_id, tool="function")
    checked = sync_here(threads, make_worker)
    assert sorted(checked.changed) == sorted([threads[0].pk, threads[2].pk])
    for thread in threads:
        assert_conversation_is_the_source_thread(sandbox.state, thread)
        assert thread.conversation_id == before[thread.pk], "the mapping does not change"
    run = threads[0].history.exclude(outcome="queued").get(action="sync")
    assert (run.outcome, run.detail["new_messages"], run.detail["items_added"]) == (
        "succeeded",
        4,
        6,  # two user messages, two replies, a function call with its output
    )


def test_a_sync_after_a_sync_appends_only_what_is_new_again(sandbox, make_worker):
    (thread,) = migrated(sandbox, make_worker)
    for _ in range(3):
        sandbox.state.add_turn(thread.thread_id)
        sync_here([thread], make_worker)
        assert_conversation_is_the_source_thread(sandbox.state, thread)
    assert thread.history.filter(action="sync", outcome="succeeded").count() == 3


def test_a_sync_under_faults_writes_exactly_once(sandbox, make_worker):
    (thread,) = migrated(sandbox, make_worker, minimum=25, maximum=120)
    for _ in range(12):
        sandbox.state.add_turn(thread.thread_id)
    script(sandbox, {"kind": "drop_after_write", "path_contains": "/items"},
           {"kind": "server_error", "path_contains": "/items"})  # fmt: skip
    sync_here([thread], make_worker)
    assert_conversation_is_the_source_thread(sandbox.state, thread)


def test_a_thread_whose_last_migrated_message_is_gone_is_marked_diverged(sandbox, make_worker):
    (thread,) = migrated(sandbox, make_worker)
    sandbox.state.messages[thread.thread_id].pop()  # deleted at the source
    sandbox.state.add_turn(thread.thread_id)
    checked = sync_here([thread], make_worker)
    assert checked.diverged == [thread.pk]
    thread.refresh_from_db()
    assert thread.status == ThreadStatus.SUCCEEDED, "the conversation stays as verified"
    assert "is gone at the source" in thread.diverged
    assert not thread.history.filter(action="sync").exists(), "never rewritten"
    assert sync.syncable(Thread.objects.filter(pk=thread.pk)).count() == 0


def test_new_messages_that_would_change_what_was_migrated_mark_the_thread_diverged(
    sandbox, make_worker
):
    (thread,) = migrated(sandbox, make_worker)
    state = sandbox.state
    oldest = state.messages[thread.thread_id][0]["created_at"]
    state.add_turn(thread.thread_id, tool=None, created_at=oldest - 100)  # older than migrated
    sync_here([thread], make_worker)
    thread.refresh_from_db()
    assert thread.status == ThreadStatus.SUCCEEDED
    assert "do not come after what was migrated" in thread.diverged
    run = thread.history.exclude(outcome="queued").get(action="sync")
    assert run.outcome == "failed" and run.error_message.startswith("Diverged")
    stored = state.conversations[thread.conversation_id]["items"]
    assert len(stored) == thread.items_committed, "nothing appended"


@pytest.mark.django_db(transaction=True)  # the inline run's threads have connections of their own
def test_sync_threads_runs_inline_from_the_command_line(sandbox, make_worker, capsys):
    threads = migrated(sandbox, make_worker, count=2)
    sandbox.state.add_turn(threads[1].thread_id)
    call_command("sync_threads", "--all", "--inline")
    out = capsys.readouterr().out
    assert "1 up to date, 1 with new messages" in out and "Synced: 1 succeeded" in out
    for thread in threads:
        assert_conversation_is_the_source_thread(sandbox.state, thread)


def test_a_queued_sync_cancelled_goes_back_to_succeeded(sandbox, make_worker):
    from migrations_app import actions

    (thread,) = migrated(sandbox, make_worker)
    sandbox.state.add_turn(thread.thread_id)
    sync.check_and_queue([thread.pk], group="test")
    actions.apply("cancel", Thread.objects.filter(pk=thread.pk))
    thread.refresh_from_db()
    assert thread.status == ThreadStatus.SUCCEEDED
    assert sync.check([thread.pk]).changed == [thread.pk], "still new: the next sync takes it"


# --- Azure, the live source --------------------------------------------------------------------
@pytest.mark.parametrize("auth", [connections.API_KEY, connections.ENTRA])
def test_threads_migrated_from_azure_are_synced_as_they_keep_changing(
    azure_sandbox, entra_credential, slept, auth
):
    with pointed_at(azure_sandbox, auth, KEY if auth == connections.API_KEY else None):
        threads = migrated(azure_sandbox, lambda: worker(slept), count=2)
        for thread in threads:
            azure_sandbox.state.add_turn(thread.thread_id, tool="bing_grounding")
            azure_sandbox.state.add_turn(thread.thread_id, tool="function")
        sync_here(threads, lambda: worker(slept))
    for thread in threads:
        assert_conversation_is_the_source_thread(azure_sandbox.state, thread)
        assert thread.history.exclude(outcome="queued").get(action="sync").outcome == "succeeded"
    assert azure_sandbox.state.missing_api_version == []

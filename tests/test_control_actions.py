"""Control actions take effect at once, whatever the depth of the queue they control, and never
erase a thread's verified mapping (issue 21, findings 1 and 2)."""

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from migrations_app import actions, mapping, upload, workers
from migrations_app.models import BulkAction, Conversation, Thread, ThreadStatus
from tests import checks, factories
from tests.engine import queue, register

pytestmark = pytest.mark.django_db

THREADS = reverse("admin:migrations_app_thread_changelist")


def migrated(sandbox, make_worker, **kwargs):
    thread = register(sandbox, **kwargs)
    assert upload.migrate_thread(thread.pk, make_worker()) == "succeeded"
    thread.refresh_from_db()
    return thread


def mapping_row(thread):
    _header, row = mapping.mapping_rows(Thread.objects.filter(pk=thread.pk))
    return row


# --- a re-migrate keeps the mapping until its upload starts -------------------------------------
def test_a_queued_remigrate_keeps_the_conversation_in_the_mapping(sandbox, make_worker):
    thread = migrated(sandbox, make_worker, minimum=3, maximum=30)
    old = thread.conversation_id
    queue(thread, "remigrate")
    assert thread.status == ThreadStatus.QUEUED and thread.conversation_id == old
    assert Conversation.objects.live().get(thread=thread).conversation_id == old
    assert mapping_row(thread)[:2] == [thread.thread_id, old]


def test_cancelling_a_queued_remigrate_returns_the_thread_to_succeeded_with_its_conversation(
    sandbox, make_worker
):
    thread = migrated(sandbox, make_worker, minimum=3, maximum=30)
    old = thread.conversation_id
    queue(thread, "remigrate")
    assert actions.apply("cancel", Thread.objects.filter(pk=thread.pk))[0] == 1
    thread.refresh_from_db()
    assert (thread.status, thread.conversation_id) == (ThreadStatus.SUCCEEDED, old)
    live = Conversation.objects.live().get(thread=thread)
    assert live.conversation_id == old and live.replace_requested_at is None
    assert mapping_row(thread)[:3] == [thread.thread_id, old, "succeeded"]
    cancelled = thread.history.get(action="cancel")
    assert cancelled.detail["restored"] == "succeeded"
    checks.assert_migrated_exactly_once(sandbox.state, thread)


def test_a_remigrate_replaces_the_conversation_only_when_its_upload_starts(sandbox, make_worker):
    thread = migrated(sandbox, make_worker, minimum=3, maximum=30)
    old = thread.conversation_id
    queue(thread, "remigrate")
    assert upload.migrate_thread(thread.pk, make_worker()) == "succeeded"
    thread.refresh_from_db()
    assert thread.conversation_id != old
    assert Conversation.objects.get(conversation_id=old).replaced_at is not None
    run = thread.history.get(action="remigrate", outcome="succeeded")
    assert run.detail["replaced"] == old
    checks.assert_migrated_exactly_once(sandbox.state, thread)


def test_cancelling_a_remigrate_of_a_failed_thread_restores_its_failure(sandbox, make_worker):
    thread = migrated(sandbox, make_worker, minimum=3, maximum=30)
    Thread.objects.filter(pk=thread.pk).update(
        status=ThreadStatus.FAILED, error_kind="conflict", error_message="changed outside"
    )
    queue(thread, "remigrate")
    actions.apply("cancel", Thread.objects.filter(pk=thread.pk))
    thread.refresh_from_db()
    assert (thread.status, thread.error_kind, thread.error_message) == (
        ThreadStatus.FAILED,
        "conflict",
        "changed outside",
    )


def test_a_remigrate_cancelled_after_its_upload_started_is_cancelled(sandbox, make_worker):
    """Once the new upload started, the old conversation is history: the thread cannot go back
    to it, and a later migrate resumes the new one."""
    thread = migrated(sandbox, make_worker, minimum=25)
    old = thread.conversation_id
    queue(thread, "remigrate")
    upload.STOPPING.set()  # its worker stops once the new upload has begun: handed back
    try:
        assert upload.migrate_thread(thread.pk, make_worker()) == "abandoned"
    finally:
        upload.STOPPING.clear()
    thread.refresh_from_db()
    assert thread.status == ThreadStatus.QUEUED
    actions.apply("cancel", Thread.objects.filter(pk=thread.pk))
    thread.refresh_from_db()
    assert thread.status == ThreadStatus.CANCELLED
    assert Conversation.objects.get(conversation_id=old).replaced_at is not None


def test_the_confirmation_page_says_what_happens_to_the_mapping(client, operator, sandbox):
    factories.threads(2, status=ThreadStatus.QUEUED)
    page = client.post(THREADS, {"action": "cancel_selected", "select_across": "1",
                                 "_selected_action": ["0"], "index": "0"})  # fmt: skip
    html = page.content.decode()
    assert 'id="confirm-mapping"' in html and "keeping its conversation and its mapping" in html


# --- a bulk cancel takes effect at once --------------------------------------------------------
def test_a_cancel_of_many_threads_is_applied_in_the_request(client, operator):
    threads = factories.threads(actions.INLINE_LIMIT + 67, status=ThreadStatus.QUEUED)
    for index in range(30):  # the deep queue it is meant to stop
        OrmQ.objects.create(key="console", payload=f"x{index}", lock="2000-01-01T00:00:00Z")
    confirmed = {"action": "cancel_selected", "select_across": "1", "_selected_action": ["0"],
                 "index": "0", "post": "yes"}  # fmt: skip
    response = client.post(THREADS, confirmed)
    assert response.status_code == 302
    assert not BulkAction.objects.exists()
    statuses = set(Thread.objects.filter(pk__in=[t.pk for t in threads]).values_list("status"))
    assert statuses == {(ThreadStatus.CANCELLED,)}


def test_a_cancel_beyond_the_request_runs_on_the_control_lane_not_behind_the_queue(
    operator, monkeypatch
):
    monkeypatch.setitem(actions.INLINE_LIMITS, "cancel", 10)
    factories.threads(25, status=ThreadStatus.QUEUED)
    factories.threads(5, prefix="thread_done", status=ThreadStatus.SUCCEEDED)
    bulk = actions.start_bulk("cancel", Thread.objects.all(), eligible=25, user=operator)
    main_queue = [q for q in OrmQ.objects.all() if q.key == "console"]
    assert not main_queue, "not behind the migration tasks"
    assert workers.run_control_tasks() == 1
    bulk.refresh_from_db()
    assert (bulk.status, bulk.done) == ("done", 25)
    assert bulk.skipped == {"already migrated": 5}
    assert not Thread.objects.filter(status=ThreadStatus.QUEUED).exists()


def test_the_bulk_action_page_gives_every_skip_with_its_reason(client, operator):
    bulk = factories.bulk_action(status="done")
    BulkAction.objects.filter(pk=bulk.pk).update(
        skipped={"running now (it will finish)": 165, "already cancelled": 2}
    )
    html = client.get(reverse("admin:migrations_app_bulkaction_change", args=[bulk.pk]))
    text = html.content.decode()
    assert "<li>165: running now (it will finish)</li>" in text
    assert "<li>2: already cancelled</li>" in text


def test_a_bulk_action_whose_task_left_the_queue_unrun_is_failed_by_the_sweeper(operator):
    from datetime import timedelta

    from django.utils import timezone

    from migrations_app import tasks

    factories.threads(3, status=ThreadStatus.FAILED, error_kind="transient")
    bulk = actions.start_bulk("retry", Thread.objects.all(), eligible=3, user=operator)
    OrmQ.objects.all().delete()  # purged
    BulkAction.objects.filter(pk=bulk.pk).update(updated_at=timezone.now() - timedelta(minutes=2))
    assert tasks.sweep_stuck_threads()["bulk_actions_failed"] == 1
    bulk.refresh_from_db()
    assert bulk.status == "failed" and "left the queue without running it" in bulk.error

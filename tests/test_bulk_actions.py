"""'Select all N' on the threads list: more threads than one request should touch are handed to one
task that applies the action a page at a time, with its progress on a BulkAction page."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from migrations_app import actions, paging, tasks
from migrations_app.models import Attempt, BulkAction, Thread, ThreadStatus
from tests import factories

pytestmark = pytest.mark.django_db

THREADS = reverse("admin:migrations_app_thread_changelist")
MANY = actions.INLINE_LIMIT + 50


def select_all(client, action, query="", **extra):
    """The whole filtered list, as 'Select all N' then the confirmation's 'Yes' send it."""
    data = {"action": action, "_selected_action": ["0"], "index": "0", "select_across": "1"}
    return client.post(THREADS + query, {**data, "post": "yes", **extra})


def bulk_tasks():
    return [q.task for q in OrmQ.objects.all() if q.func() == actions.BULK_TASK]


def run_queued_bulk_task(**options):
    """What a worker does with the bulk task at the head of the queue: takes it, runs it."""
    queued = next(q for q in OrmQ.objects.order_by("pk") if q.func() == actions.BULK_TASK)
    queued.delete()
    return actions.run_bulk(*queued.task["args"], **options)


@pytest.fixture
def pages(monkeypatch):
    """Pages of 40 threads, each recorded as the task applies it."""
    monkeypatch.setattr(paging, "PAGE_SIZE", 40)
    applied = []
    real = actions.apply_page

    def recorded(action, pks, **kwargs):
        applied.append(list(pks))
        return real(action, pks, **kwargs)

    monkeypatch.setattr(actions, "apply_page", recorded)
    return applied


@pytest.fixture
def many_failed():
    return factories.threads(MANY, status=ThreadStatus.FAILED, error_kind="transient")


def test_selecting_many_threads_queues_one_task_and_changes_no_thread_in_the_request(
    client, operator, many_failed
):
    response = select_all(client, "retry_selected", "?status__exact=failed")
    assert response.status_code == 302
    assert len(bulk_tasks()) == 1
    assert not Thread.objects.filter(status=ThreadStatus.QUEUED).exists()
    bulk = BulkAction.objects.get()
    assert (bulk.action, bulk.eligible, bulk.done, bulk.status) == ("retry", MANY, 0, "queued")
    assert bulk.requested_by == operator and bulk.selection == "status__exact=failed"


def test_a_bulk_action_writes_one_log_entry_for_the_whole(client, operator, many_failed):
    select_all(client, "retry_selected")
    bulk = BulkAction.objects.get()
    run_queued_bulk_task()
    entry = LogEntry.objects.get()
    assert entry.object_id == str(bulk.pk) and entry.user == operator
    assert entry.change_message == f"Retry: {MANY} threads (console action, applied by a worker)"


def test_the_task_applies_the_action_a_page_at_a_time_and_records_its_progress(
    operator, many_failed, pages
):
    bulk = actions.start_bulk("retry", Thread.objects.all(), eligible=MANY, user=operator)
    assert run_queued_bulk_task() == BulkAction.Status.DONE
    bulk.refresh_from_db()
    assert (bulk.status, bulk.done, bulk.finished_at is not None) == ("done", MANY, True)
    assert [len(page) for page in pages] == [40, 40, 40, 30]
    assert Thread.objects.filter(status=ThreadStatus.QUEUED).count() == MANY
    # Each thread keeps its own history row, naming who asked.
    assert Attempt.objects.filter(actor=operator, action="retry", outcome="queued").count() == MANY


def test_a_task_that_runs_out_of_time_queues_the_next_which_goes_on_where_it_stopped(
    operator, many_failed, pages
):
    bulk = actions.start_bulk("retry", Thread.objects.all(), eligible=MANY, user=operator)
    seconds = iter(range(100))  # a second passes between two looks at the clock
    assert run_queued_bulk_task(seconds=2.5, clock=lambda: next(seconds)) == "queued"
    bulk.refresh_from_db()
    assert (bulk.status, bulk.done, bulk.last_pk) == ("queued", 120, pages[2][-1])
    assert len(bulk_tasks()) == 1, "the next task is queued"
    assert run_queued_bulk_task() == "done"
    bulk.refresh_from_db()
    assert (bulk.status, bulk.done) == ("done", MANY)
    assert pages[3][0] > pages[2][-1], "it went on after the last page done"


def fetch_tasks():
    return [q for q in OrmQ.objects.all() if q.func() == "migrations_app.tasks.fetch_from_source"]


def test_a_task_delivered_again_resumes_after_the_last_page_it_recorded(operator):
    # A fetch still applies to a thread once queued: only the recorded page keeps it from twice.
    threads = factories.threads(MANY)
    bulk = actions.start_bulk("fetch", Thread.objects.all(), eligible=MANY, user=operator)
    done_before = sorted(t.pk for t in threads)[:60]  # its worker died after this page
    actions.apply_page("fetch", done_before, group=bulk.task_group, user=operator)
    BulkAction.objects.filter(pk=bulk.pk).update(status="running", done=60, last_pk=done_before[-1])
    run_queued_bulk_task()
    bulk.refresh_from_db()
    assert (bulk.status, bulk.done) == ("done", MANY)
    assert len(fetch_tasks()) == MANY, "no thread fetched twice"


def test_a_finished_bulk_action_delivered_again_does_nothing(operator, many_failed):
    bulk = actions.start_bulk("retry", Thread.objects.all(), eligible=MANY, user=operator)
    task = next(q for q in OrmQ.objects.all() if q.func() == actions.BULK_TASK).task
    run_queued_bulk_task()
    Thread.objects.update(status=ThreadStatus.FAILED)
    assert actions.run_bulk(*task["args"]) == "done"
    assert BulkAction.objects.get(pk=bulk.pk).done == MANY
    assert not Thread.objects.filter(status=ThreadStatus.QUEUED).exists()


def test_a_bulk_action_that_crashes_says_so_and_what_stays_done(operator, many_failed, monkeypatch):
    actions.start_bulk("retry", Thread.objects.all(), eligible=MANY, user=operator)

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(actions, "apply_page", broken)
    with pytest.raises(RuntimeError):
        run_queued_bulk_task()
    bulk = BulkAction.objects.get()
    assert bulk.status == "failed" and bulk.finished_at is not None
    assert bulk.error.startswith("Stopped: the database went away (RuntimeError).")


def test_the_sweeper_fails_a_bulk_action_whose_worker_is_gone(operator, many_failed):
    bulk = factories.bulk_action(status="running")
    fresh = factories.bulk_action(status="running")
    with time_machine.travel(timezone.now() - timedelta(hours=1)):
        BulkAction.objects.filter(pk=bulk.pk).update(updated_at=timezone.now())
    assert tasks.sweep_stuck_threads()["bulk_actions_failed"] == 1
    bulk.refresh_from_db()
    fresh.refresh_from_db()
    assert bulk.status == "failed" and "stopped without finishing" in bulk.error
    assert fresh.status == "running"


def test_fetching_many_threads_queues_their_fetches_from_the_task(client, operator):
    factories.threads(MANY)
    select_all(client, "fetch_selected")
    assert not [
        q for q in OrmQ.objects.all() if q.func() == "migrations_app.tasks.fetch_from_source"
    ]
    run_queued_bulk_task()
    fetches = [
        q for q in OrmQ.objects.all() if q.func() == "migrations_app.tasks.fetch_from_source"
    ]
    assert len(fetches) == MANY
    assert BulkAction.objects.get().done == MANY


def test_a_few_threads_are_still_acted_on_in_the_request_with_a_log_entry_each(client, operator):
    factories.threads(3, status=ThreadStatus.FAILED, error_kind="transient")
    select_all(client, "retry_selected")
    assert not BulkAction.objects.exists() and not bulk_tasks()
    assert Thread.objects.filter(status=ThreadStatus.QUEUED).count() == 3
    assert LogEntry.objects.filter(user=operator).count() == 3


# --- what staff see --------------------------------------------------------------------------
def test_the_message_links_to_the_bulk_actions_page_which_shows_its_progress(
    client, operator, many_failed
):
    response = select_all(client, "retry_selected", "?status__exact=failed")
    bulk = BulkAction.objects.get()
    page = reverse("admin:migrations_app_bulkaction_change", args=[bulk.pk])
    listing = client.get(response.url).content.decode()
    assert f"Retry: {MANY} threads are handed to a worker" in listing
    assert "the list shows each thread as it is until the worker reaches it" in listing
    assert f'Follow it on <a href="{page}">bulk action #{bulk.pk}</a>' in listing
    html = client.get(page).content.decode()
    assert f"0 of {MANY} threads acted on (this page refreshes until it is done)" in html
    assert '<meta http-equiv="refresh" content="2">' in html
    assert f'href="{THREADS}?status__exact=failed"' in html
    run_queued_bulk_task()
    html = client.get(page).content.decode()
    assert f"{MANY} of {MANY} threads acted on<" in html and "http-equiv" not in html


def test_a_hostile_selection_is_shown_escaped(client, operator):
    bulk = factories.bulk_action(selection='q="><script>alert(1)</script>')
    html = client.get(reverse("admin:migrations_app_bulkaction_change", args=[bulk.pk]))
    assert b"<script>alert(1)" not in html.content

"""The dashboard's counters (tallies.py) stay exact through every way a thread changes: each test
drives one kind of change and compares the tallies with a count of the thread table itself."""

import io
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from migrations_app import actions, dashboard, intake, states, tallies, upload
from migrations_app.models import ImportBatch, StatusTally, Thread, ThreadStatus
from migrations_app.openai_client import ApiFailure
from migrations_app.sandbox import generate_dataset
from tests.engine import queue, register
from tests.factories import error

pytestmark = pytest.mark.django_db


def assert_exact() -> None:
    counted = dict(Thread.objects.order_by().values_list("status").annotate(n=Count("pk")))
    assert tallies.status_counts() == counted
    failed = Counter(
        Thread.objects.filter(status=ThreadStatus.FAILED).values_list(
            "error_kind", "error_template"
        )
    )
    groups = {
        (g["error_kind"], g["error_template"]): g["count"] for g in tallies.failure_groups(99)
    }
    assert groups == dict(failed)


def test_ids_imported_in_bulk_are_counted_as_pending():
    ids = "\n".join(f"thread_bulk{i}" for i in range(250))
    intake.import_thread_ids(io.StringIO(ids), batch=ImportBatch(source="paste"))
    assert tallies.status_counts() == {"pending": 250}
    assert_exact()


def test_an_export_loaded_and_loaded_again_counts_each_thread_once():
    bundles = list(generate_dataset(seed=3, thread_count=12)[1])
    intake.store_bundles(bundles)
    intake.store_bundles(bundles[:5])  # an upsert: updates, no new rows
    assert tallies.status_counts() == {"pending": 12}
    assert_exact()


def test_queue_cancel_and_migrate_again_move_the_counts():
    for index in range(6):
        Thread.objects.create(thread_id=f"thread_q{index}")
    actions.apply("migrate", Thread.objects.all(), enqueue=False)
    assert tallies.status_counts() == {"queued": 6}
    actions.apply("cancel", Thread.objects.filter(thread_id__in=["thread_q0", "thread_q1"]))
    assert tallies.status_counts() == {"queued": 4, "cancelled": 2}
    actions.apply("migrate", Thread.objects.filter(status="cancelled"), enqueue=False)
    assert_exact()


def test_a_migration_that_succeeds_counts_running_then_succeeded_and_charts_it(
    sandbox, make_worker
):
    thread = register(sandbox, minimum=3)
    lease = states.take(thread.pk, "w#1", 60)
    assert tallies.status_counts() == {"running": 1}
    Thread.objects.filter(pk=thread.pk).update(status=ThreadStatus.QUEUED, lease_owner="")
    assert lease is not None
    assert upload.migrate_thread(thread.pk, make_worker()) == "succeeded"
    assert tallies.status_counts() == {"succeeded": 1}
    assert sum(n for _, n in dashboard.migrated_per_minute()) == 1
    assert_exact()


def test_a_failure_is_grouped_by_reason_and_leaves_the_group_when_retried(sandbox, make_worker):
    thread = Thread.objects.create(thread_id="thread_gone")
    queue(thread)
    upload.migrate_thread(thread.pk, make_worker())
    thread.refresh_from_db()
    assert tallies.failure_groups(5) == [
        {"error_kind": "not_found", "error_template": thread.error_template, "count": 1}
    ]
    other = Thread.objects.create(thread_id="thread_other", status=ThreadStatus.QUEUED)
    lease = states.take(other.pk, "w#1", 60)
    attempt = states.open_attempt(lease, "migrate", "w")
    states.fail(lease, attempt.pk, ApiFailure("transient", "boom"))
    assert_exact()
    actions.apply("retry", Thread.objects.filter(pk=other.pk), enqueue=False)
    assert [g["error_template"] for g in tallies.failure_groups(5)] == [thread.error_template]
    assert_exact()


def test_the_sweeper_and_a_takeover_keep_the_counts(sandbox):
    thread = Thread.objects.create(thread_id="thread_swept", status=ThreadStatus.QUEUED)
    states.take(thread.pk, "w#1", 60)
    Thread.objects.filter(pk=thread.pk).update(lease_expires_at=timezone.now() - timedelta(1))
    assert states.take(thread.pk, "w#2", 60) is not None  # the takeover: running → running
    Thread.objects.filter(pk=thread.pk).update(lease_expires_at=timezone.now() - timedelta(1))
    assert states.sweep("resume").resumed == 1
    assert tallies.status_counts() == {"queued": 1}
    assert_exact()


def test_re_migrating_moves_succeeded_threads_back_to_queued(sandbox, make_worker):
    thread = register(sandbox, minimum=3)
    upload.migrate_thread(thread.pk, make_worker())
    queue(thread, "remigrate")
    assert tallies.status_counts() == {"queued": 1}
    assert sum(n for _, n in dashboard.migrated_per_minute()) == 1, "the success happened"
    assert_exact()


def test_deleted_threads_leave_the_counts():
    for index, status in enumerate(["pending", "failed", "failed", "succeeded"]):
        Thread.objects.create(
            thread_id=f"thread_d{index}", status=status, **error("x" * (status == "failed"))
        )
    Thread.objects.filter(status__in=["failed", "pending"]).delete()
    assert tallies.status_counts() == {"succeeded": 1}
    assert tallies.failure_groups(5) == []
    assert_exact()


def test_compacting_folds_the_deltas_into_one_row_per_status():
    for index in range(5):
        Thread.objects.create(thread_id=f"thread_c{index}")
    actions.apply("migrate", Thread.objects.all(), enqueue=False)
    actions.apply("cancel", Thread.objects.filter(thread_id="thread_c0"))
    tallies.compact()
    assert StatusTally.objects.count() == 2
    assert tallies.status_counts() == {"queued": 4, "cancelled": 1}
    assert_exact()


def test_the_dashboard_reads_the_tallies_not_the_thread_table(admin_client):
    Thread.objects.create(thread_id="thread_dash", status=ThreadStatus.FAILED, error_kind="auth")
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:migrations_app_dashboard"))
    assert response.status_code == 200
    thread_table = [q["sql"] for q in queries if 'FROM "migrations_app_thread"' in q["sql"]]
    # Reads that stay bounded without tallies: the threads being retried or waiting for a sync
    # and the diverged ones (each counted up to a cap in a partial index), and the estimate's
    # sizes (an index-only scan while few threads are left, a TABLESAMPLE of the table when
    # many are). Nothing else reads the thread table.
    capped = ("requested_action", "diverged")
    bounded = (*capped, "message_count")
    assert [sql for sql in thread_table if not any(word in sql for word in bounded)] == []
    counted = [sql for sql in thread_table if any(word in sql for word in capped)]
    assert len(counted) == 3
    assert all(f"LIMIT {dashboard.RETRYING_COUNTED + 1}" in sql for sql in counted), counted
    html = response.content.decode()
    assert 'id="request-budgets"' in html and "Source (Assistants)" in html


@pytest.mark.django_db(transaction=True)
def test_triggers_lost_by_a_table_rebuild_are_put_back_and_the_counts_taken_again():
    Thread.objects.create(thread_id="thread_kept", status=ThreadStatus.SUCCEEDED)
    with connection.cursor() as cursor:
        for name in tallies.TRIGGERS:
            cursor.execute(f"DROP TRIGGER {name} ON {tallies.THREAD}")
    Thread.objects.create(thread_id="thread_unseen")
    assert not tallies.installed()
    assert tallies.install()
    assert tallies.status_counts() == {"succeeded": 1, "pending": 1}

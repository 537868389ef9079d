"""Fetching without dead ends (issue 21, items 3 and 6): a fetch is offered only where a source
API is configured; a fetch that fails on a thread already mirrored keeps its mirror and its
state, the failure in its history; each state's page offers its remedy first, as the primary
button, and every other action with a line saying what it does."""

import re

import pytest
from django.urls import reverse

from migrations_app import actions, intake, states
from migrations_app.models import Attempt, ErrorKind, ImportBatch, Message, Thread, ThreadStatus
from tests import factories
from tests.factories import source_message, source_thread

pytestmark = pytest.mark.django_db

THREADS = reverse("admin:migrations_app_thread_changelist")
DASHBOARD = reverse("admin:migrations_app_dashboard")


def exported(thread_id="thread_ExportOnly0000000000001"):
    """A thread loaded from an export: mirrored, and unknown to the sandbox."""
    intake.store_bundles(
        [
            {
                "thread": source_thread(thread_id),
                "messages": [source_message("msg_export_1", thread_id, "From the export")],
                "runs": [],
                "run_steps": [],
            }
        ]
    )
    return Thread.objects.get(thread_id=thread_id)


@pytest.fixture
def no_source(settings):
    """A key for the destination and no source API: the Assistants API is gone."""
    settings.OPENAI_API_KEY = settings.ASSISTANTS_API_KEY = "sk-test"
    settings.ASSISTANTS_BASE_URL = settings.OPENAI_BASE_URL = None
    assert not intake.source_configured()


def page_of(client, thread):
    return client.get(reverse("admin:migrations_app_thread_change", args=[thread.pk]))


# --- a fetch that fails never takes a mirrored thread backwards --------------------------------
@pytest.mark.parametrize("status", [ThreadStatus.PENDING, ThreadStatus.CANCELLED])
def test_a_failed_fetch_of_a_mirrored_thread_keeps_its_mirror_and_its_state(sandbox, status):
    thread = factories.in_state(exported(), status)
    attempt = intake.fetch_for_staff(thread.thread_id)
    thread.refresh_from_db()
    assert (thread.status, thread.error_kind, thread.error_message) == (status, "", "")
    assert thread.data is not None and Message.objects.filter(thread=thread).count() == 1
    assert attempt.outcome == Attempt.Outcome.FAILED
    assert attempt.error_kind == ErrorKind.NOT_FOUND and attempt.http_status == 404
    assert "it keeps its mirror and its state" in attempt.detail["kept"]


def test_a_failed_fetch_of_a_thread_never_mirrored_still_marks_it_failed(sandbox):
    intake.import_thread_ids(["thread_NeverMirrored000000001"], batch=ImportBatch(source="paste"))
    intake.fetch_for_staff("thread_NeverMirrored000000001")
    thread = Thread.objects.get()
    assert (thread.status, thread.error_kind) == (ThreadStatus.FAILED, ErrorKind.NOT_FOUND)


def test_a_failed_fetch_keeps_a_failed_mirrored_thread_failed_with_its_own_reason(sandbox):
    thread = factories.failed(exported(), "transient", "The server answered 503")
    intake.fetch_for_staff(thread.thread_id)
    thread.refresh_from_db()
    assert (thread.error_kind, thread.error_message) == ("transient", "The server answered 503")


def test_the_failed_fetch_is_in_the_threads_history_with_what_was_kept(admin_client, sandbox):
    thread = exported()
    intake.fetch_for_staff(thread.thread_id)
    history = page_of(admin_client, thread).content.decode()
    assert "No thread found with id" in history
    assert "Nothing changed: the thread was mirrored already" in history


def test_a_mirrored_thread_that_failed_as_not_found_is_migrated_from_its_mirror(admin_client):
    """Before this rule a failed fetch could leave a mirrored thread "not found": its way out is
    a migrate, which needs no source."""
    thread = factories.failed(exported(), ErrorKind.NOT_FOUND, "No thread found with id 'x'")
    assert "migrate" in states.applicable_actions(thread.pk)
    assert states.remedy(thread).startswith("The mirror holds this thread")
    html = page_of(admin_client, thread).content.decode()
    assert 'class="console-action primary"' in html and 'name="button-migrate"' in html
    assert actions.apply("migrate", Thread.objects.filter(pk=thread.pk), enqueue=False)[0] == 1


# --- no source configured: no fetch offered anywhere -------------------------------------------
def test_without_a_source_the_list_offers_no_fetch(admin_client, no_source):
    exported()
    menu = admin_client.get(THREADS).context["action_form"].fields["action"].choices
    assert "fetch_selected" not in [name for name, _ in menu]
    assert "migrate_selected" in [name for name, _ in menu]


def test_without_a_source_the_thread_page_offers_no_fetch(admin_client, no_source):
    html = page_of(admin_client, exported()).content.decode()
    assert 'name="button-fetch"' not in html and 'name="button-migrate"' in html


def test_without_a_source_a_thread_not_found_points_to_an_export_instead(admin_client, no_source):
    intake.import_thread_ids(["thread_Unmirrored00000000001"], batch=ImportBatch(source="paste"))
    thread = factories.failed(Thread.objects.get(), ErrorKind.NOT_FOUND, "No thread found")
    html = page_of(admin_client, thread).content.decode()
    assert 'name="button-fetch"' not in html
    assert "No source API is configured: load an export that holds this thread" in html
    dashboard = admin_client.get(DASHBOARD).content.decode()
    assert "Fetch this group again" not in dashboard
    assert "Load an export that holds them" in dashboard


def test_without_a_source_a_thread_never_mirrored_is_offered_nothing_but_an_export(
    admin_client, no_source
):
    intake.import_thread_ids(["thread_Unmirrored00000000004"], batch=ImportBatch(source="paste"))
    html = page_of(admin_client, Thread.objects.get()).content.decode()
    assert 'id="actions"' not in html
    assert "no source API is configured to fetch it from" in html and "load an export" in html


def test_without_a_source_a_sent_fetch_is_refused_with_the_reason(client, operator, no_source):
    thread = exported()
    answer = client.post(
        reverse("admin:migrations_app_thread_act", args=[thread.pk, "fetch"]), {"post": "yes"}
    )
    assert answer.status_code == 302
    shown = [str(m) for m in client.get(answer.url).context["messages"]]
    assert any("No source API is configured" in m for m in shown), shown
    assert not Attempt.objects.filter(action="fetch").exists()


def test_without_a_source_a_skipped_thread_says_to_load_an_export(admin_client, no_source):
    intake.import_thread_ids(["thread_Unmirrored00000000002"], batch=ImportBatch(source="paste"))
    factories.failed(Thread.objects.get(), ErrorKind.NOT_FOUND, "No thread found")
    plan = actions.plan("retry", Thread.objects.all())
    assert list(plan.skipped) == [
        "not found at the source and not mirrored (load an export that holds it)"
    ]


# --- the thread page: the remedy first, every action explained --------------------------------
def buttons(html):
    """(name, primary) of the thread page's buttons, in their order."""
    found = re.findall(r'class="console-action( primary)?">.*?name="button-(\w+)"', html, re.S)
    return [(name, bool(primary)) for primary, name in found]


def test_a_failed_thread_offers_retry_as_its_remedy_and_explains_the_rest(client, operator):
    thread = factories.failed(exported(), "transient", "The server answered 503")
    html = page_of(client, thread).content.decode()
    assert buttons(html) == [("retry", True), ("fetch", False)]
    assert "Queue it again; nothing was uploaded yet" in html
    assert "Copy it from the source again, replacing the mirror" in html
    assert 'name="button-migrate"' not in html, "migrate would do what retry does"


def test_a_failed_upload_offers_retry_then_re_migrate(client, operator):
    thread = factories.failed(exported(), "transient", "The server answered 503")
    factories.give_conversation(thread, "conv_StartedUpload0000001")
    html = page_of(client, thread).content.decode()
    assert buttons(html) == [("retry", True), ("remigrate", False)]
    assert "Resume the upload where it stopped, into the same conversation." in html
    assert "Upload it again into a new conversation; the mapping keeps the current one" in html


def test_a_conflict_offers_re_migrate_as_its_remedy(client, operator):
    thread = factories.failed(exported(), ErrorKind.CONFLICT, "changed outside the console")
    factories.give_conversation(thread, "conv_Changed0000000000001")
    assert buttons(page_of(client, thread).content.decode()) == [("remigrate", True)]


def test_a_thread_not_found_offers_fetch_as_its_remedy(client, operator, sandbox):
    intake.import_thread_ids(["thread_Unmirrored00000000003"], batch=ImportBatch(source="paste"))
    thread = factories.failed(Thread.objects.get(), ErrorKind.NOT_FOUND, "No thread found")
    assert buttons(page_of(client, thread).content.decode()) == [("fetch", True)]


def test_a_cancelled_thread_offers_migrate_not_retry(client, operator):
    thread = factories.in_state(exported(), ThreadStatus.CANCELLED)
    assert buttons(page_of(client, thread).content.decode()) == [
        ("migrate", True),
        ("fetch", False),
    ]


def test_a_queued_thread_offers_cancel_with_what_it_does(client, operator):
    thread = factories.in_state(exported(), ThreadStatus.QUEUED)
    html = page_of(client, thread).content.decode()
    assert buttons(html) == [("cancel", False), ("fetch", False)]
    assert "Take it off the queue before a worker starts it" in html


# --- a fetch that stops without a word (issue 20, finding 7) -------------------------------------
def test_a_fetch_whose_task_raised_is_recorded_and_its_batch_stops_waiting(sandbox, monkeypatch):
    from migrations_app import intake, tasks
    from migrations_app.intake import batches
    from migrations_app.models import ImportBatch

    batch = ImportBatch(source="paste")
    intake.import_thread_ids([next(iter(sandbox.state.threads))], batch=batch)
    intake.queue_batch_fetch(batch)
    thread = batch.threads.get()
    assert thread.fetch_task is not None

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(intake, "fetch_for_staff", broken)
    with pytest.raises(RuntimeError):
        tasks.fetch_from_source(thread.thread_id)
    thread.refresh_from_db()
    assert (thread.status, thread.fetch_task) == ("failed", None)
    assert "The fetch stopped without an answer: RuntimeError" in thread.error_message
    assert batches.fetch_progress(batch)["waiting"] == 0


def test_a_fetch_whose_task_ended_without_a_word_is_failed_by_the_sweeper(sandbox):
    from django_q.models import OrmQ

    from migrations_app import intake, tasks
    from migrations_app.intake import batches
    from migrations_app.models import ImportBatch

    batch = ImportBatch(source="paste")
    intake.import_thread_ids(list(sandbox.state.threads)[:2], batch=batch)
    intake.queue_batch_fetch(batch)
    assert tasks.sweep_stuck_threads()["fetches_failed"] == 0, "their tasks still wait"
    OrmQ.objects.all().delete()  # django-q2 stopped them at Q_TIMEOUT and acknowledged them
    from migrations_app.models import Heartbeat

    Heartbeat.objects.all().delete()  # the next sweep, without waiting a minute
    assert tasks.sweep_stuck_threads()["fetches_failed"] == 2
    assert batches.fetch_progress(batch)["waiting"] == 0
    history = batch.threads.first().history.get(action="fetch")
    assert "its task ended (timed out after Q_TIMEOUT" in history.error_message

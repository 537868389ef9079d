"""Control actions in a real browser, with a real cluster behind a deep queue (issue 21, trust
findings 1 and 2): a bulk "Cancel queued" takes effect at once, and a cancelled re-migrate
leaves every thread succeeded with its conversation, so the mapping never loses it."""

import time

import pytest
from django.test import override_settings
from playwright.sync_api import expect

from migrations_app import actions, intake, upload
from migrations_app.models import Attempt, ImportBatch, Thread, ThreadStatus
from migrations_app.sandbox import SandboxServer, seeded_state
from tests import checks, personas
from tests.cluster import Cluster, wait_until
from tests.test_browser import browser, log_in, page, shot  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
COUNT = 130  # more than a page of the list and than INLINE_LIMIT: a bulk re-migrate


@pytest.fixture
def world():
    with SandboxServer(state=seeded_state(seed=5, thread_count=COUNT)) as server:
        yield server


def select_all_and(tab, action):
    tab.check("#action-toggle")
    tab.click("#changelist-form .question a")  # "Select all N threads"
    tab.select_option("select[name=action]", action)
    tab.click("button[name=index]")


def test_a_bulk_cancel_stops_a_bulk_remigrate_at_once_and_keeps_every_mapping(
    page,  # noqa: F811
    live_server,
    world,
    tmp_path,
):
    personas.operator("olga")
    intake.import_thread_ids(list(world.state.threads), batch=ImportBatch(source="paste"))
    actions.apply("migrate", Thread.objects.all(), actor_label="test", enqueue=False)
    with override_settings(SANDBOX_URL=world.url, OPENAI_API_KEY=None, ASSISTANTS_API_KEY=None,
                           OPENAI_BASE_URL=None, ASSISTANTS_BASE_URL=None):  # fmt: skip
        upload.migrate_many(Thread.objects.values_list("pk", flat=True))
    before = dict(Thread.objects.values_list("thread_id", "conversation_id"))
    assert set(Thread.objects.values_list("status", flat=True)) == {ThreadStatus.SUCCEEDED}

    world.state.configure_faults(latency_ms=1500)  # the slow API: a deep queue
    cluster = Cluster(world, tmp_path, Q_WORKERS=1, MIGRATION_THREADS_PER_WORKER=2).start()
    try:
        log_in(page, live_server, "olga")
        threads = f"{live_server.url}/admin/migrations_app/thread/"
        page.goto(f"{threads}?status__exact=succeeded")
        select_all_and(page, "remigrate_selected")
        expect(page.locator("#confirm-mapping")).to_contain_text("keeps its current conversation")
        page.click("input[type=submit][value^='Yes']")
        expect(page.locator(".messagelist")).to_contain_text("handed to a worker")
        wait_until(
            lambda: Thread.objects.filter(status=ThreadStatus.QUEUED).count() > COUNT // 2,
            what="the bulk re-migrate to queue the threads",
        )

        page.goto(f"{threads}?status__exact=queued")
        select_all_and(page, "cancel_selected")
        expect(page.locator("#confirm-mapping")).to_contain_text(
            "keeping its conversation and its mapping"
        )
        shot(page, "cancel-queued-confirm")
        asked = time.monotonic()
        page.click("input[type=submit][value^='Yes']")
        expect(page.locator(".messagelist")).to_contain_text("Cancel")
        assert not Thread.objects.filter(status=ThreadStatus.QUEUED).exists(), "at once"
        assert time.monotonic() - asked < 10
        shot(page, "cancel-queued-done")

        wait_until(
            lambda: (
                not Thread.objects.filter(
                    status__in=[ThreadStatus.QUEUED, ThreadStatus.RUNNING]
                ).exists()
            ),
            timeout=120,
            what="the threads already running to finish",
        )
        started = set(
            Attempt.objects.filter(action="remigrate", outcome="succeeded").values_list(
                "thread__thread_id", flat=True
            )
        )
        assert len(started) < COUNT // 4, "the cancel stopped the rest"
        for thread in Thread.objects.all():
            checks.assert_migrated_exactly_once(world.state, thread)
            if thread.thread_id not in started:
                assert thread.conversation_id == before[thread.thread_id], "mapping kept"

        # The thread page says what happened, and the mapping names the old conversation.
        kept = Thread.objects.exclude(thread_id__in=started).first()
        page.goto(f"{threads}{kept.pk}/change/")
        expect(page.locator("#summary .status-badge")).to_have_text("Succeeded")
        expect(page.locator("#history tbody")).to_contain_text("Cancel")
        mapping = page.request.get(f"{threads}mapping.csv?thread_id={kept.thread_id}")
        assert before[kept.thread_id] in mapping.text()
        shot(page, "remigrate-cancelled-thread")
    finally:
        cluster.stop()

"""The import page in a real browser: pasted ids are fetched by a real django-q2 cluster and the
batch page shows them coming back; an auditor cannot import."""

import pytest
from playwright.sync_api import expect

from migrations_app.models import ImportBatch, Thread
from tests import personas
from tests.cluster import Cluster
from tests.test_browser import browser, log_in, page, shot, world  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_pasted_ids_are_fetched_and_the_batch_page_shows_it(page, live_server, world, tmp_path):  # noqa: F811
    personas.operator("olga")
    cluster = Cluster(world, tmp_path).start()
    try:
        log_in(page, live_server, "olga")
        page.goto(f"{live_server.url}/admin/migrations_app/importbatch/")
        page.click("text=Import threads")
        expect(page.locator("#import-intro")).to_contain_text("fetched from the source API")
        known = list(world.state.threads)[:5]
        page.fill("#id_pasted", "\n".join([*known, "thread_NotAtTheSourceAtAll"]))
        shot(page, "import-page")
        page.click("input[value=Import]")
        expect(page.locator(".messagelist")).to_contain_text("6 fetches from the source queued")
        # The batch page refreshes itself until no fetch is waiting.
        expect(page.locator("#fetch-progress")).to_contain_text(
            "6 fetch tasks queued: 5 fetched, 1 not found at the source, 0 failed, 0 waiting",
            timeout=120_000,
        )
        shot(page, "import-batch-fetched")
        batch = ImportBatch.objects.get()
        assert batch.status == ImportBatch.Status.DONE
        fetched = Thread.objects.filter(thread_id__in=known)
        assert all(thread.fetched_at and thread.message_count for thread in fetched)

        page.goto(
            f"{live_server.url}/admin/migrations_app/thread/?import_batch__id__exact={batch.pk}"
        )
        expect(page.locator("#result_list")).to_contain_text("thread_NotAtTheSourceAtAll")
        shot(page, "import-batch-threads")
    finally:
        cluster.stop()


def test_an_auditor_sees_no_import_button_and_is_refused_the_import_page(page, live_server):  # noqa: F811
    personas.auditor("aldo")
    log_in(page, live_server, "aldo")
    page.goto(f"{live_server.url}/admin/migrations_app/importbatch/")
    expect(page.locator("#content")).to_be_visible()
    expect(page.locator("text=Import threads")).to_have_count(0)
    response = page.goto(f"{live_server.url}/admin/migrations_app/importbatch/new/")
    assert response.status == 403
    page.goto(f"{live_server.url}/admin/migrations_app/assistant/")
    expect(page.locator("#sync-assistants")).to_have_count(0)


def test_an_operator_syncs_the_assistants_from_the_admin(page, live_server, world, settings):  # noqa: F811
    settings.SANDBOX_URL = world.url
    personas.operator("olga")
    log_in(page, live_server, "olga")
    page.goto(f"{live_server.url}/admin/migrations_app/assistant/")
    expect(page.locator("#result_list")).to_have_count(0)
    page.click("#sync-assistants button")
    expect(page.locator(".messagelist")).to_contain_text("assistant")
    expect(page.locator("#result_list tbody tr")).to_have_count(len(world.state.assistants))
    shot(page, "assistants-synced")

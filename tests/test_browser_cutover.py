"""The cutover of one import batch in a real browser, with a real cluster (issue 18, part 4):
live (its threads synced as their users keep talking), the final sync once staff confirm the
application stopped writing, then cut over."""

import pytest
from django.test import override_settings
from playwright.sync_api import expect

from migrations_app import actions, intake, sync, upload
from migrations_app.models import ImportBatch, Thread, ThreadStatus
from migrations_app.sandbox import SandboxServer, seeded_state
from tests import checks, personas
from tests.cluster import Cluster, wait_until
from tests.test_browser import browser, log_in, page, shot  # noqa: F401
from tests.test_cluster import source_items

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world():
    with SandboxServer(state=seeded_state(seed=9, thread_count=8)) as server:
        yield server


def test_an_operator_runs_a_batchs_cutover_from_start_to_end(
    page,  # noqa: F811
    live_server,
    world,
    tmp_path,
):
    personas.operator("olga")
    batch = ImportBatch(source="paste", filename="pasted ids")
    intake.import_thread_ids(list(world.state.threads), batch=batch)
    actions.apply("migrate", Thread.objects.all(), actor_label="test", enqueue=False)
    with override_settings(SANDBOX_URL=world.url, OPENAI_API_KEY=None, ASSISTANTS_API_KEY=None,
                           OPENAI_BASE_URL=None, ASSISTANTS_BASE_URL=None):  # fmt: skip
        upload.migrate_many(Thread.objects.values_list("pk", flat=True))
    assert set(Thread.objects.values_list("status", flat=True)) == {ThreadStatus.SUCCEEDED}
    talker = Thread.objects.order_by("pk").first()
    world.state.add_turn(talker.thread_id, tool="function")  # said after the migration
    cluster = Cluster(world, tmp_path).start()
    try:
        log_in(page, live_server, "olga")
        batch_page = f"{live_server.url}/admin/migrations_app/importbatch/{batch.pk}/change/"
        page.goto(batch_page)
        expect(page.locator("#cutover")).to_contain_text("Live")
        page.click("text=start the final sync")
        expect(page.locator("#cutover-step")).to_contain_text("stopped writing")
        shot(page, "cutover-final-sync-confirm")
        page.click("input[value^='The application has stopped writing']")
        expect(page.locator(".messagelist")).to_contain_text("Final sync started: 8 migrated")
        expect(page.locator("#cutover")).to_contain_text("Final sync")
        wait_until(lambda: not sync.pending_in(batch), timeout=120, what="the final sync")
        page.reload()
        page.click("a:text-is('cut over')")
        expect(page.locator("#cutover-step")).to_contain_text("its mapping is final")
        page.click("input[value='Cut over']")
        expect(page.locator(".messagelist")).to_contain_text("Cut over: no more syncs")
        expect(page.locator("#cutover")).to_contain_text("Cut over")
        shot(page, "cutover-done")

        # The thread that kept talking got its last exchange, listed on its page.
        page.goto(f"{live_server.url}/admin/migrations_app/thread/{talker.pk}/change/")
        expect(page.locator("#sync-list tbody tr").first).to_contain_text("Succeeded")
        expect(page.locator("#sync-list tbody tr").first).to_contain_text("4")
        shot(page, "cutover-thread-synced")
        for thread in Thread.objects.all():
            stored = world.state.conversations[thread.conversation_id]["items"]
            assert len(stored) == len(source_items(world.state, thread.thread_id))
            checks.assert_migrated_exactly_once(world.state, thread)
        # Cut over: no more syncs.
        world.state.add_turn(talker.thread_id)
        assert sync.syncable(Thread.objects.all()).count() == 0
    finally:
        cluster.stop()

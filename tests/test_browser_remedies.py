"""Every failure with its remedy, in a real browser with a real cluster: a thread not found at
the source is offered "fetch again", never "retry"; a retried thread loses its red box and its
page follows it until it succeeds; the history names the action staff took."""

import pytest
from playwright.sync_api import expect

from migrations_app import actions, intake
from migrations_app.models import ImportBatch, Thread
from tests import personas
from tests.cluster import Cluster, wait_until
from tests.test_browser import browser, log_in, page, shot, world  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
GONE = "thread_NotAtTheSourceAtAll"


def thread_page(live_server, thread):
    return f"{live_server.url}/admin/migrations_app/thread/{thread.pk}/change/"


def test_each_failure_offers_the_action_that_fixes_it(page, live_server, world, tmp_path):  # noqa: F811
    personas.operator("olga")
    known = sorted(world.state.threads)[:2]
    intake.import_thread_ids([*known, GONE], batch=ImportBatch(source="paste"))
    refused, done = (Thread.objects.get(thread_id=t) for t in known)
    gone = Thread.objects.get(thread_id=GONE)
    # The first conversation create is refused once: that thread fails with a reason.
    world.state.configure_faults(
        scripted=[{"kind": "auth_error", "method": "POST", "path_contains": "/v1/conversations"}]
    )
    actions.apply("migrate", Thread.objects.filter(pk__in=[refused.pk, gone.pk]), actor_label="t")
    cluster = Cluster(world, tmp_path).start()
    try:
        wait_until(
            lambda: (
                Thread.objects.filter(pk__in=[refused.pk, gone.pk], status="failed").count() == 2
            ),
            what="both threads to fail",
        )
        log_in(page, live_server, "olga")

        # Not found at the source: fetch again, never retry (it would fail the same way).
        page.goto(thread_page(live_server, gone))
        expect(page.locator("#remedy")).to_have_text(
            "Fix the id or the source, then fetch it again."
        )
        expect(page.locator("input[name=button-fetch]")).to_be_visible()
        expect(page.locator("input[name=button-retry]")).to_have_count(0)
        expect(page.locator("input[name=button-migrate]")).to_have_count(0)
        page.goto(f"{live_server.url}/admin/migrations_app/thread/dashboard/")
        groups = page.locator("#failures tbody tr")
        expect(groups.filter(has_text="not found")).to_contain_text("Fetch this group again")
        expect(
            groups.filter(has_text="not found").locator("input[value='Retry this group']")
        ).to_have_count(0)
        expect(groups.filter(has_text="Authentication")).to_contain_text("Retry this group")
        shot(page, "dashboard-remedies")

        # A retry: the red box goes, the page follows the thread until it has succeeded.
        page.goto(thread_page(live_server, refused))
        expect(page.locator("#error")).to_contain_text("Authentication")
        page.click("input[name=button-retry]")
        page.click("input[type=submit][value^='Yes']")
        expect(page.locator("#summary")).not_to_contain_text("Failed")
        expect(page.locator("#error")).to_have_count(0)
        expect(page.locator("#summary .status-badge")).to_have_text("Succeeded", timeout=90_000)
        history = page.locator("#history tbody")
        expect(history).to_contain_text("Retry")
        shot(page, "thread-retried")

        # Migrate on a failed thread is recorded as migrate, re-migrate as re-migrate.
        actions.apply("migrate", Thread.objects.filter(pk=done.pk), actor_label="t")
        wait_until(lambda: Thread.objects.get(pk=done.pk).status == "succeeded", what="migrate")
        page.goto(thread_page(live_server, done))
        page.click("input[name=button-remigrate]")
        page.click("input[type=submit][value^='Yes']")
        expect(page.locator("#summary .status-badge")).to_have_text("Succeeded", timeout=90_000)
        recorded = page.locator("#history tbody tr").evaluate_all(
            "rows => rows.map(row => [row.cells[2].innerText, row.cells[3].innerText])"
        )
        assert ["Re-migrate", "Succeeded"] in recorded and ["Migrate", "Succeeded"] in recorded
        assert not [what for what, _ in recorded if what == "Retry"], recorded
        shot(page, "thread-history-names")
    finally:
        cluster.stop()

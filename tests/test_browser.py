"""The console in a real browser: Debian's Chromium driven by Playwright, against a live server,
with a real django-q2 cluster doing the work. Screenshots go to test-artifacts/."""

import contextlib
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from migrations_app import intake
from migrations_app.models import Thread, ThreadStatus
from migrations_app.sandbox import SandboxServer, seeded_state
from tests import personas
from tests.cluster import Cluster, wait_for_the_cluster
from tests.factories import HOSTILE, hostile_bundle

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# The flags this machine needs: no sandbox as root, and no background calls to the internet.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # around it are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


# Every page reports its Content-Security-Policy violations to the test (an init script runs in
# every document before the page's own scripts).
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation({
    page: document.location.href,
    directive: event.violatedDirective,
    blocked: event.blockedURI,
    source: event.sourceFile + ":" + event.lineNumber,
    sample: event.sample,
  });
});
"""


@pytest.fixture
def page(browser):
    """A fresh browser tab. Any Content-Security-Policy violation on any page it opened fails
    the test: the console must work under a policy without inline script or style."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    violations = []
    context.expose_binding("reportCspViolation", lambda source, found: violations.append(found))
    context.add_init_script(CSP_LISTENER)
    opened = context.new_page()
    opened.dialogs = []
    opened.csp_violations = violations
    opened.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
    opened.on(
        "console",
        lambda message: (
            violations.append({"console": message.text, "page": opened.url})
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    yield opened
    with contextlib.suppress(Exception):  # a page that is gone has nothing more to report
        opened.evaluate("0")  # a round trip: reports sent before it have arrived
    context.close()
    if violations:
        pytest.fail(
            "Content-Security-Policy violations:\n" + "\n".join(map(str, violations)),
            pytrace=False,
        )


@pytest.fixture
def world():
    with SandboxServer(state=seeded_state(seed=21, thread_count=12)) as server:
        yield server


def log_in(page, live_server, username):
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", personas.PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#console-links")).to_be_visible()


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_an_operator_imports_migrates_watches_compares_and_retries(
    page, live_server, world, tmp_path
):
    personas.operator("olga")
    cluster = Cluster(world, tmp_path).start()
    try:
        log_in(page, live_server, "olga")
        # Import a CSV of thread ids.
        ids = tmp_path / "ids.csv"
        ids.write_text("thread_id\n" + "\n".join(world.state.threads) + "\n")
        page.click("text=Import threads")
        page.set_input_files("#id_ids_file", str(ids))
        page.click("input[value=Import]")
        expect(page.locator("body")).to_contain_text("12")
        batch = intake.ImportBatch.objects.get()
        assert batch.new_count == 12

        # One thread's conversation create is refused once: it will fail with a reason. A thread
        # with messages, so that its page has both sides to compare (one of the 12 has none).
        doomed = next(t for t in world.state.threads if len(world.state.messages[t]) > 1)
        world.state.configure_faults(
            scripted=[
                {
                    "kind": "auth_error",
                    "method": "POST",
                    "path_contains": "/v1/conversations",
                    "body_contains": doomed,
                    "times": 1,
                }
            ]
        )

        # Migrate the filtered set (this import batch) through its confirmation page.
        page.goto(
            f"{live_server.url}/admin/migrations_app/thread/?import_batch__id__exact={batch.pk}"
        )
        page.check("#action-toggle")
        page.select_option("select[name=action]", "migrate_selected")
        page.click("button[name=index]")
        expect(page.locator("#confirm-summary")).to_contain_text("will apply to 12 threads")
        page.click("input[value^='Yes, migrate 12']")
        expect(page.locator(".messagelist")).to_contain_text("Migrate: 12 threads")
        shot(page, "threads-list")

        wait_for_the_cluster()
        failed = Thread.objects.get(status=ThreadStatus.FAILED)
        assert failed.thread_id == doomed

        # The dashboard shows the failure group with its reason.
        page.goto(f"{live_server.url}/admin/migrations_app/thread/dashboard/")
        expect(page.locator("#failures")).to_contain_text("API key was refused")

        # Open the failed thread: both sides, the reason, and a retry through confirmation.
        page.goto(f"{live_server.url}/admin/migrations_app/thread/{failed.pk}/change/")
        expect(page.locator("#compare .bubble")).to_have_count(min(failed.message_count, 50))
        expect(page.locator("#compare td.converted .conv-item").first).to_be_visible()
        expect(page.locator("#error")).to_contain_text("HTTP 401")
        shot(page, "thread-page")
        page.click("input[name=button-retry]")
        page.click("input[value^='Yes, retry 1']")
        expect(page.locator(".messagelist")).to_contain_text("Retry: 1 thread")

        # Watch the dashboard reach 100% (it refreshes itself while work runs).
        page.goto(f"{live_server.url}/admin/migrations_app/thread/dashboard/")
        expect(page.locator("#done-percent")).to_have_text("100.0% migrated", timeout=90_000)
        shot(page, "dashboard")
        failed.refresh_from_db()
        assert failed.status == ThreadStatus.SUCCEEDED
        page.goto(f"{live_server.url}/admin/migrations_app/thread/{failed.pk}/change/")
        expect(page.locator("#summary")).to_contain_text("verified")
        expect(page.locator("#history")).to_contain_text("Retry")
    finally:
        cluster.stop()


def test_an_auditor_sees_no_action_buttons_and_a_forged_post_is_refused(page, live_server):
    personas.auditor("aldo")
    intake.import_thread_ids(["thread_audited"], batch=intake.ImportBatch(source="paste"))
    thread = Thread.objects.get()
    log_in(page, live_server, "aldo")
    page.goto(f"{live_server.url}/admin/migrations_app/thread/{thread.pk}/change/")
    expect(page.locator("#summary")).to_be_visible()
    expect(page.locator("#actions")).to_have_count(0)
    page.goto(f"{live_server.url}/admin/migrations_app/thread/")
    options = page.locator("select[name=action] option").all_inner_texts()
    assert [o for o in options if "---" not in o] == ["Preview (dry run)"]
    token = page.context.cookies()
    csrf = next(c["value"] for c in token if c["name"] == "csrftoken")
    forged = page.request.post(
        f"{live_server.url}/admin/migrations_app/thread/{thread.pk}/act/migrate/",
        form={"post": "yes", "csrfmiddlewaretoken": csrf},
        headers={"Referer": live_server.url},
    )
    assert forged.status == 403
    assert Thread.objects.get().status == ThreadStatus.PENDING


def test_hostile_content_is_shown_as_text_and_never_runs(page, live_server):
    admin = personas.superuser("root")
    assert admin.is_staff
    bundle = hostile_bundle()
    intake.store_bundles([bundle])
    Thread.objects.update(status="failed", error_kind="invalid", error_message=HOSTILE)
    thread = Thread.objects.get()
    log_in(page, live_server, "root")
    for path in [
        f"/admin/migrations_app/thread/{thread.pk}/change/",
        "/admin/migrations_app/thread/",
        "/admin/migrations_app/thread/dashboard/",
    ]:
        page.goto(live_server.url + path)
        assert page.evaluate("typeof window.pwned") == "undefined", path
    page.goto(f"{live_server.url}/admin/migrations_app/thread/{thread.pk}/change/")
    expect(page.locator("#compare td.source .text")).to_have_text(HOSTILE)
    assert page.locator("#compare img").count() == 0
    assert re.search(r"\{\{ 7\|add:1 \}\}", page.locator("#error").inner_text())
    assert page.dialogs == []

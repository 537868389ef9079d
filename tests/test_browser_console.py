"""The console at 1440×900 in Debian's Chromium, as support staff meet it (issue 11, items 3, 4, 7
and 8): lists that fit, the aligned compare view, search by id fragments, and a dashboard with a
scale, a readable progress label and failure groups that let go of a retried thread.
Screenshots go to test-artifacts/console-*.png."""

import pytest
from playwright.sync_api import expect

from migrations_app import intake
from migrations_app.models import Conversation, Thread, ThreadStatus
from migrations_app.sandbox import generate_dataset
from tests import personas, test_browser
from tests.cluster import Cluster, wait_for_the_cluster, wait_until
from tests.test_browser import log_in, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

browser, world = test_browser.browser, test_browser.world  # the shared fixtures
WIDTH, HEIGHT = 1440, 900


@pytest.fixture
def page(browser):
    """A 1440×900 window that records every response the pages needed."""
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    opened = context.new_page()
    opened.responses = []
    opened.on("response", lambda response: opened.responses.append(response))
    yield opened
    context.close()


@pytest.fixture
def mirrored():
    """The 12 demo threads of seed 1 (one of 315 messages), three of them failed with long
    errors, one migrated, and one id never fetched."""
    assistants, bundles = generate_dataset(seed=1, thread_count=12)
    intake.upsert_assistants(assistants)
    intake.store_bundles(list(bundles))
    intake.import_thread_ids(["thread_NeverFetched0000000000"], batch=intake.ImportBatch())
    failed = list(Thread.objects.filter(message_count__gt=0).order_by("pk")[:3])
    Thread.objects.filter(pk__in=[t.pk for t in failed]).update(
        status=ThreadStatus.FAILED,
        error_kind="transient",
        error_message="Uploading failed: The server answered 503 (HTTP 503): upstream connect "
        "error or disconnect/reset before headers; retried 6 times over 4 minutes; the thread "
        "resumes from item 40 on retry. " * 3,
        error_http_status=503,
    )
    done = Thread.objects.get(message_count=315)
    Conversation.objects.create(thread=done, conversation_id="conv_68a5f1e2" + "0" * 40)
    Thread.objects.filter(pk=done.pk).update(
        status=ThreadStatus.SUCCEEDED,
        conversation_id="conv_68a5f1e2" + "0" * 40,
        items_total=348,
        items_committed=348,
    )
    return Thread.objects.all()


def superuser():
    user = personas.superuser("root")
    return user.username


def no_overflow(page):
    """The results table needs no horizontal scrollbar."""
    sizes = page.evaluate(
        "() => { const r = document.querySelector('.results');"
        " return [r.scrollWidth, r.clientWidth, document.documentElement.scrollWidth]; }"
    )
    assert sizes[0] <= sizes[1], f"the table needs {sizes[0]} px of {sizes[1]}"
    assert sizes[2] <= WIDTH, f"the page is {sizes[2]} px wide"


def row_heights(page):
    return page.evaluate(
        "() => [...document.querySelectorAll('#result_list tbody tr')]"
        ".map(row => row.getBoundingClientRect().height)"
    )


def not_found(page):
    return [r.url for r in page.responses if r.status == 404]


# --- item 3: lists that fit -------------------------------------------------------------------
def test_the_threads_list_fits_1440_pixels_with_one_line_per_row(page, live_server, mirrored):
    log_in(page, live_server, superuser())
    page.goto(f"{live_server.url}/admin/migrations_app/thread/?o=2")
    no_overflow(page)
    heights = row_heights(page)
    assert len(heights) == mirrored.count()
    assert max(heights) - min(heights) < 2 and max(heights) < 45, heights
    failed = page.locator("#result_list tr", has=page.locator(".status-badge", has_text="Failed"))
    expect(failed).to_have_count(3)
    error = failed.first.locator("td.field-short_error .one-line")
    assert error.get_attribute("title").startswith("Uploading failed: The server answered 503")
    assert error.evaluate("e => e.scrollWidth > e.clientWidth"), "a long error is cut, not wrapped"
    never = page.locator("#result_list tr", has_text="thread_NeverFetched")
    expect(never.locator("td.field-source_messages")).to_have_text("not fetched")
    for column in ["status", "messages", "items", "attempts", "last error", "conversation"]:
        expect(page.locator("#result_list thead")).to_contain_text(column, ignore_case=True)
    expect(page.locator("#result_list td.field-conversation .id-text").first).to_be_visible()
    shot(page, "console-threads-list")
    assert not_found(page) == []


def test_the_import_batches_and_conversations_lists_fit_too(page, live_server, mirrored):
    log_in(page, live_server, superuser())
    for path in ["importbatch", "conversation"]:
        page.goto(f"{live_server.url}/admin/migrations_app/{path}/")
        no_overflow(page)
        heights = row_heights(page)
        assert heights and max(heights) < 45, (path, heights)


# --- item 7: search by fragments --------------------------------------------------------------
def test_a_fragment_of_an_id_finds_its_thread(page, live_server, mirrored):
    log_in(page, live_server, superuser())
    wanted = Thread.objects.filter(message_count=40, status=ThreadStatus.PENDING).first()
    fragment = wanted.thread_id.removeprefix("thread_")[:6]
    page.goto(f"{live_server.url}/admin/migrations_app/thread/")
    page.fill("#searchbar", fragment)
    page.press("#searchbar", "Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list tbody")).to_contain_text(wanted.thread_id)
    page.fill("#searchbar", "68a5f1")
    page.press("#searchbar", "Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list tbody")).to_contain_text("conv_68a5f1e2")


# --- item 4: the compare view -----------------------------------------------------------------
def test_the_thread_page_aligns_each_message_with_the_items_it_became(page, live_server, mirrored):
    log_in(page, live_server, superuser())
    thread = Thread.objects.get(message_count=315)
    page.goto(f"{live_server.url}/admin/migrations_app/thread/{thread.pk}/change/")
    rows = page.locator("#compare tbody.compare-row")
    expect(rows).to_have_count(50)
    expect(page.locator(".pager").first).to_contain_text("Rows 1–50 of 315")
    # Every part of a row starts its source and its items on the same line.
    offsets = page.evaluate(
        "() => [...document.querySelectorAll('#compare tr.compare-part')].map(tr => {"
        " const s = tr.querySelector('td.source').firstElementChild.getBoundingClientRect();"
        " const c = tr.querySelector('td.converted').firstElementChild.getBoundingClientRect();"
        " return Math.abs(s.top - c.top); })"
    )
    assert offsets and max(offsets) < 12, offsets
    # Tool-call pairs stand beside the run step that made them.
    step = page.locator("#compare tr.compare-part.step", has=page.locator(".conv-item")).first
    expect(step.locator("td.converted .conv-item.function_call")).to_have_count(1)
    expect(step.locator("td.converted .conv-item.function_call_output")).to_have_count(1)
    expect(step.locator("td.source .tool-call")).to_contain_text("(")
    # A skipped message says so, with the warning, where it was.
    skipped = page.locator("#compare tr.compare-part.message.skipped").first
    expect(skipped.locator("td.converted")).to_contain_text("Not sent")
    expect(skipped.locator("td.converted .warning-list")).to_be_visible()
    # Items read as text; their JSON waits behind a summary.
    first_item = page.locator("#row-1 .conv-item").first
    expect(first_item.locator("pre.raw")).to_be_hidden()
    first_item.locator("summary").click()
    expect(first_item.locator("pre.raw")).to_contain_text('"type": "message"')
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 15_000, f"the page is {height} px tall"
    shot(page, "console-thread-page")
    page.locator(".pager a", has_text="7").first.click()
    expect(page.locator("#compare tbody.compare-row")).to_have_count(15)
    expect(page.locator("#compare tbody.compare-row").last.locator("th")).to_have_text("315")
    assert not_found(page) == []


# --- item 8: the dashboard --------------------------------------------------------------------
def contrast(page, selector):
    """WCAG contrast of an element's text against the first opaque background behind it."""
    return page.evaluate(
        """selector => {
          const rgb = c => c.match(/[\\d.]+/g).map(Number);
          const lum = ([r, g, b]) => {
            const f = v => {
              v /= 255;
              return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
            };
            return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
          };
          let e = document.querySelector(selector);
          const fg = rgb(getComputedStyle(e).color);
          let bg = null;
          for (; e && !bg; e = e.parentElement) {
            const c = rgb(getComputedStyle(e).backgroundColor);
            if (c.length < 4 || c[3] > 0) bg = c;
          }
          const [hi, lo] = [lum(fg), lum(bg || [255, 255, 255])].sort((a, b) => b - a);
          return (hi + 0.05) / (lo + 0.05);
        }""",
        selector,
    )


def test_the_dashboard_lets_go_of_a_retried_group_and_shows_its_scale(
    page, live_server, world, tmp_path
):
    personas.operator("olga")
    intake.import_thread_ids(list(world.state.threads), batch=intake.ImportBatch(source="csv"))
    world.state.configure_faults(
        scripted=[
            {"kind": "auth_error", "method": "POST", "path_contains": "/v1/conversations",
             "times": 1}
        ]
    )  # fmt: skip
    cluster = Cluster(world, tmp_path).start()
    try:
        log_in(page, live_server, "olga")
        page.goto(f"{live_server.url}/admin/migrations_app/thread/")
        page.check("#action-toggle")
        page.select_option("select[name=action]", "fetch_selected")
        page.click("button[name=index]")
        page.click("input[value^='Yes, fetch']")
        wait_until(
            lambda: Thread.objects.filter(fetched_at__isnull=False).count() == 12,
            what="the fetch",
        )
        page.check("#action-toggle")
        page.select_option("select[name=action]", "migrate_selected")
        page.click("button[name=index]")
        page.click("input[value^='Yes, migrate']")
        expect(page.locator(".messagelist")).to_contain_text("Migrate: 12 threads queued.")
        wait_for_the_cluster()
        page.goto(f"{live_server.url}/admin/migrations_app/thread/dashboard/")
        group = page.locator("#failures tbody tr", has_text="API key was refused")
        expect(group).to_have_count(1)
        expect(group).to_contain_text("Authentication / permission")
        # The chart has a scale and time ticks; the progress label reads on any background.
        expect(page.locator(".chart-y span")).to_have_count(3)
        expect(page.locator(".chart-y span").last).to_have_text("0")
        expect(page.locator(".chart-x span")).to_have_count(5)
        assert page.locator(".chart rect").count() >= 1
        assert contrast(page, "#done-percent") >= 4.5
        expect(page.locator("#estimate")).to_contain_text("Still to migrate: 1 thread, about")
        shot(page, "console-dashboard-failures")

        group.locator("input[value='Retry this group']").click()
        page.click("input[value^='Yes, retry 1']")
        assert page.url.endswith("/admin/migrations_app/thread/dashboard/")
        expect(page.locator(".messagelist")).to_contain_text("Retry: 1 thread queued.")
        expect(page.locator("#failures")).not_to_contain_text("API key was refused")
        # The page follows the retry on its own until everything is migrated.
        expect(page.locator("#done-percent")).to_have_text("100.0% migrated", timeout=90_000)
        expect(page.locator("#failures")).to_contain_text("No failures.")
        expect(page.locator("#estimate")).to_contain_text("Nothing left to migrate.")
        shot(page, "console-dashboard")
        assert not_found(page) == []
    finally:
        cluster.stop()


def test_an_auditor_meets_a_403_page_with_the_consoles_frame(page, live_server):
    personas.auditor("aldo")
    log_in(page, live_server, "aldo")
    response = page.goto(f"{live_server.url}/admin/migrations_app/importbatch/new/")
    assert response.status == 403
    expect(page.locator("#permission-denied")).to_contain_text("You may look, but not do this")
    expect(page.locator("#header")).to_contain_text("migration console")
    page.click("text=Back to the console")
    expect(page.locator("#overview")).to_be_visible()


# --- no inline script anywhere ----------------------------------------------------------------
CSP = "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; img-src 'self'"


def under_csp(page):
    """Serve every page with a Content-Security-Policy that forbids inline script (and any
    third-party origin), and record what the browser refuses."""

    def add_policy(route):
        if route.request.resource_type != "document":
            return route.continue_()
        response = route.fetch()
        route.fulfill(
            response=response, headers={**response.headers, "content-security-policy": CSP}
        )

    page.route("**/*", add_policy)
    page.violations = []
    page.on(
        "console",
        lambda message: (
            page.violations.append(message.text)
            if "Content Security Policy" in message.text
            else None
        ),
    )


def test_the_consoles_pages_run_under_a_policy_without_inline_script(page, live_server, mirrored):
    under_csp(page)
    log_in(page, live_server, superuser())
    thread = Thread.objects.get(message_count=315)
    for path in [
        "/admin/",
        "/admin/migrations_app/thread/",
        f"/admin/migrations_app/thread/{thread.pk}/change/",
        "/admin/migrations_app/thread/dashboard/",
        "/admin/migrations_app/importbatch/new/",
    ]:
        page.goto(live_server.url + path)
    page.goto(f"{live_server.url}/admin/migrations_app/thread/")
    page.check("#action-toggle")
    page.select_option("select[name=action]", "migrate_selected")
    page.click("button[name=index]")
    expect(page.locator("#confirm-summary")).to_be_visible()
    page.click("text=No, take me back")  # admin/js/cancel.js, not an onclick attribute
    expect(page.locator("#result_list")).to_be_visible()
    assert page.violations == []

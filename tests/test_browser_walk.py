"""The console's second walk by staff (issue 21), in Debian's Chromium at 1440×900 and 1024×768:
a fetch that fails on an exported thread takes nothing from it, and no fetch is offered without
a source (item 3); lists sized by their content with a one-click copy of a conversation id
(item 5); the remedy first on a failed thread's page (item 6); a list that says a bulk action is
still being applied (item 12); small text that reads (item 14). Any Content-Security-Policy
violation or console error fails the test. Screenshots: test-artifacts/walk-*.png."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from migrations_app import intake
from migrations_app.models import (
    Assistant,
    Attempt,
    BulkAction,
    Conversation,
    ImportBatch,
    Thread,
    ThreadStatus,
)
from migrations_app.sandbox import generate_dataset
from tests import factories, personas, test_browser
from tests.cluster import Cluster, wait_until
from tests.factories import source_message, source_thread
from tests.test_browser import ARTIFACTS, CSP_LISTENER, log_in, shot
from tests.test_browser_console import contrast
from tests.test_bulk_actions import run_queued_bulk_task

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

browser, world = test_browser.browser, test_browser.world  # the shared fixtures
WIDE, NARROW = (1440, 900), (1024, 768)
THREADS = reverse("admin:migrations_app_thread_changelist")
# An id as long as the API's (conv_ + 48 hex), beside the sandbox's shorter ones.
API_CONVERSATION = "conv_68a5f1e20bd48190a7c5e8b6f3d2a1c90e8f7a6b5c4d3e2f1"
EXPORTED = "thread_ExportOnly0000000000001"


def open_page(browser, size):
    """A tab of `size` that records every Content-Security-Policy violation and console error."""
    width, height = size
    context = browser.new_context(viewport={"width": width, "height": height})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    problems = []
    context.expose_binding("reportCspViolation", lambda source, found: problems.append(found))
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    page.on(
        "console",
        lambda message: (
            problems.append({"console": message.text, "page": page.url})
            if message.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append({"error": str(error), "page": page.url}))
    page.problems = problems
    return page


@pytest.fixture(params=[WIDE, NARROW], ids=["1440", "1024"])
def page(request, browser):
    opened = open_page(browser, request.param)
    opened.size = request.param
    yield opened
    opened.evaluate("0")  # a round trip: reports sent before it have arrived
    opened.context.close()
    assert opened.problems == [], opened.problems


@pytest.fixture
def wide_page(browser):
    opened = open_page(browser, WIDE)
    yield opened
    opened.evaluate("0")
    opened.context.close()
    assert opened.problems == [], opened.problems


def exported():
    intake.store_bundles(
        [
            {
                "thread": source_thread(EXPORTED),
                "messages": [
                    source_message("msg_export_1", EXPORTED, "From the export"),
                    source_message("msg_export_2", EXPORTED, "Hi", role="assistant", created_at=2),
                ],
                "runs": [],
                "run_steps": [],
            }
        ]
    )
    return Thread.objects.get(thread_id=EXPORTED)


@pytest.fixture
def listed():
    """The demo's 12 threads of seed 1: most migrated (one into an API-length conversation id),
    two failed with long errors, one never fetched; and an import batch of each source."""
    assistants, bundles = generate_dataset(seed=1, thread_count=12)
    intake.upsert_assistants(assistants)
    intake.store_bundles(list(bundles), batch=intake.ImportBatch(source="export"))
    intake.import_thread_ids(
        ["thread_NeverFetched0000000000"], batch=intake.ImportBatch(source="csv")
    )
    threads = list(Thread.objects.filter(message_count__gt=0).order_by("pk"))
    for index, thread in enumerate(threads[2:]):
        conversation = API_CONVERSATION if index == 0 else f"conv_{thread.pk:08d}{'a1b2' * 4}"
        factories.succeeded(thread, conversation, items_committed=thread.items_total, attempts=1)
        Conversation.objects.filter(thread=thread).update(
            items_committed=thread.items_total,
            verified_item_count=thread.items_total,
            verified_at=timezone.now(),
        )
    for thread in threads[:2]:
        factories.failed(
            thread,
            "transient",
            "Uploading failed: The server answered 503 (HTTP 503): upstream connect error or "
            "disconnect/reset before headers; retried 6 times over 4 minutes.",
            attempts=7,
        )
    return threads


def cut(page, selector):
    """Elements matching `selector` whose text does not fit their box."""
    return page.locator(selector).evaluate_all(
        "elements => elements.filter(e => e.scrollWidth > e.clientWidth + 1)"
        ".map(e => e.textContent)"
    )


def no_sideways_scrolling(page):
    sizes = page.evaluate(
        "() => { const r = document.querySelector('.results');"
        " return [r.scrollWidth, r.clientWidth, document.documentElement.scrollWidth]; }"
    )
    columns = page.evaluate(
        "() => [...document.querySelectorAll('#result_list thead th')]"
        ".map(th => [th.className, Math.round(th.getBoundingClientRect().width)])"
    )
    assert sizes[0] <= sizes[1], f"the table needs {sizes[0]} px of {sizes[1]}: {columns}"
    assert sizes[2] <= page.size[0], f"the page is {sizes[2]} px wide"


# --- item 5: lists sized by their content --------------------------------------------------
def test_the_threads_list_shows_whole_statuses_and_conversation_ids_with_a_copy_button(
    page, live_server, listed
):
    personas.auditor("aldo")
    log_in(page, live_server, "aldo")
    page.goto(f"{live_server.url}{THREADS}?o=-2")
    no_sideways_scrolling(page)
    badges = page.locator("#result_list .status-badge")
    expect(badges.filter(has_text="Succeeded")).to_have_count(len(listed) - 2)
    assert cut(page, "#result_list .status-badge") == []
    assert cut(page, "#result_list .id-text") == []
    assert cut(page, "#result_list th.field-thread_id") == []
    # An id as long as the API's shows its start and its end; its tooltip holds the whole.
    shown = page.locator("#result_list .id-text", has_text=API_CONVERSATION[:16])
    expect(shown).to_have_text(f"{API_CONVERSATION[:16]}…{API_CONVERSATION[-10:]}")
    expect(shown).to_have_attribute("title", API_CONVERSATION)
    # Rows stay one line; the long error is cut, the whole of it in its tooltip.
    heights = page.locator("#result_list tbody tr").evaluate_all(
        "rows => rows.map(r => r.getBoundingClientRect().height)"
    )
    assert max(heights) - min(heights) < 2, heights
    error = page.locator("#result_list td.field-short_error .one-line").first
    expect(error).to_have_attribute("title", re.compile("^Uploading failed: The server"))
    assert error.evaluate("e => e.scrollWidth > e.clientWidth"), "a long error is cut"
    # One click copies the whole id.
    copy = page.locator(f"#result_list button.copy-id[data-copy='{API_CONVERSATION}']")
    copy.click()
    expect(copy).to_have_class(re.compile(r"\bcopied\b"))
    assert page.evaluate("navigator.clipboard.readText()") == API_CONVERSATION
    width = page.size[0]
    shot(page, f"walk-threads-list-{width}")
    for column in ("thread_id", "status_display", "short_error", "conversation"):
        expect(page.locator(f"#result_list thead th.column-{column}")).to_be_visible()
    counts = page.locator("#result_list thead th.column-attempts")
    expect(counts).to_be_hidden() if width == NARROW[0] else expect(counts).to_be_visible()


def test_the_import_batches_list_shows_whole_dates(page, live_server, listed):
    personas.auditor("aldo")
    log_in(page, live_server, "aldo")
    page.goto(f"{live_server.url}{reverse('admin:migrations_app_importbatch_changelist')}")
    no_sideways_scrolling(page)
    expect(page.locator("#result_list tbody tr")).to_have_count(ImportBatch.objects.count())
    assert cut(page, "#result_list td.field-created_at time") == []
    assert cut(page, "#result_list td") == []


# --- item 6: the remedy first ----------------------------------------------------------------
def test_a_failed_threads_page_offers_its_remedy_first_and_says_what_each_action_does(
    page, live_server, listed
):
    personas.operator("olga")
    failed = listed[0]
    log_in(page, live_server, "olga")
    page.goto(f"{live_server.url}{reverse('admin:migrations_app_thread_change', args=[failed.pk])}")
    actions = page.locator("#actions form")
    expect(actions).to_have_count(2)
    primary = actions.first
    expect(primary).to_have_class("console-action primary")
    expect(primary.locator("input[type=submit]")).to_have_value("Retry")
    expect(primary.locator("input[type=submit]")).to_have_class("default")
    expect(primary).to_contain_text("Queue it again; nothing was uploaded yet")
    expect(actions.nth(1).locator("input[type=submit]")).to_have_value("Fetch from source")
    expect(actions.nth(1)).to_contain_text("Copy it from the source again, replacing the mirror")
    expect(page.locator("input[name=button-migrate]")).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)  # the top of the page: the long thread's rows follow
    page.screenshot(path=str(ARTIFACTS / f"walk-failed-thread-{page.size[0]}.png"))
    primary.locator("input[type=submit]").click()
    expect(page.locator("#confirm-summary")).to_contain_text("Retry will apply to 1 thread")
    expect(page.locator("#named-threads")).to_contain_text(failed.thread_id)
    button = page.locator("input[type=submit][value^='Yes']")
    expect(button).to_have_class("default")
    assert button.evaluate("e => getComputedStyle(e).backgroundColor") != "rgb(186, 33, 33)"
    page.click("text=No, take me back")
    assert Thread.objects.get(pk=failed.pk).status == ThreadStatus.FAILED


# --- items 10 and 14: the thread page --------------------------------------------------------
def test_the_thread_page_reads_at_both_widths(page, live_server, listed):
    personas.auditor("aldo")
    thread = Thread.objects.filter(conversation_id=API_CONVERSATION).get()
    Attempt.objects.create(thread=thread, action="migrate", outcome="succeeded", actor_label="t")
    log_in(page, live_server, "aldo")
    page.goto(f"{live_server.url}{reverse('admin:migrations_app_thread_change', args=[thread.pk])}")
    expect(page.locator("#actions")).to_have_count(0)
    # The configuration is folded: the history follows the compare rows.
    expect(page.locator("#config pre.raw")).to_be_hidden()
    compare_end = page.locator("#compare").evaluate("e => e.getBoundingClientRect().bottom")
    history_top = page.locator("#history").evaluate("e => e.getBoundingClientRect().top")
    assert history_top - compare_end < 150
    # Each history date on one line.
    when = page.locator("#history td.when").first
    line = when.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 20")
    assert when.evaluate("e => e.getBoundingClientRect().height") < 2 * line + 10
    # Small text reads: "uploaded" and "JSON" at 4.5:1 or more on every item's background.
    for selector in [
        ".conv-item.user .committed",
        ".conv-item.assistant .committed",
        ".bubble.user details.json summary",
        ".bubble.assistant details.json summary",
        ".conv-item.user details.json summary",
    ]:
        assert contrast(page, f"#compare {selector}") >= 4.5, selector
    copy = page.locator("#summary .conversation button.copy-id").first
    copy.click()
    assert page.evaluate("navigator.clipboard.readText()") == API_CONVERSATION
    shot(page, f"walk-thread-page-{page.size[0]}")


def test_the_assistant_pages_original_json_is_as_large_as_the_configuration(
    wide_page, live_server, listed
):
    personas.auditor("aldo")
    log_in(wide_page, live_server, "aldo")
    assistant = Assistant.objects.order_by("pk").first()
    url = reverse("admin:migrations_app_assistant_change", args=[assistant.pk])
    wide_page.goto(f"{live_server.url}{url}")
    sizes = [
        wide_page.locator(selector).evaluate("e => getComputedStyle(e).fontSize")
        for selector in ("#original", "#config")
    ]
    assert sizes[0] == sizes[1] == "13px", sizes


# --- item 3: a fetch that fails takes nothing; no fetch without a source ---------------------
def test_a_fetch_of_an_exported_thread_the_source_does_not_hold_keeps_it_as_it_was(
    wide_page, live_server, world, tmp_path
):
    personas.operator("olga")
    thread = exported()
    cluster = Cluster(world, tmp_path).start()
    try:
        log_in(wide_page, live_server, "olga")
        url = reverse("admin:migrations_app_thread_change", args=[thread.pk])
        wide_page.goto(live_server.url + url)
        expect(wide_page.locator("#actions .console-action.primary")).to_contain_text("Migrate")
        wide_page.click("input[name=button-fetch]")
        expect(wide_page.locator("#confirm-summary")).to_contain_text(
            "If it is mirrored already and the source does not answer, it keeps its mirror"
        )
        wide_page.click("input[type=submit][value^='Yes, fetch']")
        wait_until(
            lambda: thread.history.filter(action="fetch", outcome="failed").exists(),
            what="the fetch to fail",
        )
        wide_page.goto(live_server.url + url)
        expect(wide_page.locator("#summary .status-badge")).to_have_text("Pending")
        expect(wide_page.locator("#error")).to_have_count(0)
        expect(wide_page.locator("#compare .bubble")).to_have_count(2)
        row = wide_page.locator("#history tbody tr", has_text="Fetch from source")
        expect(row).to_contain_text("Failed")
        expect(row).to_contain_text("No thread found with id")
        expect(row).to_contain_text("Nothing changed: the thread was mirrored already")
        # Its remedy is still the migrate it was offered before.
        expect(wide_page.locator("#actions .console-action.primary")).to_contain_text("Migrate")
        shot(wide_page, "walk-exported-thread-after-a-failed-fetch")
    finally:
        cluster.stop()
    thread.refresh_from_db()
    assert (thread.status, thread.error_kind) == (ThreadStatus.PENDING, "")


def test_without_a_source_no_fetch_is_offered_anywhere(wide_page, live_server, settings):
    settings.OPENAI_API_KEY = settings.ASSISTANTS_API_KEY = "sk-test"
    settings.ASSISTANTS_BASE_URL = settings.OPENAI_BASE_URL = None
    personas.operator("olga")
    thread = exported()
    intake.import_thread_ids(
        ["thread_GoneWithTheSource0001"], batch=intake.ImportBatch(source="paste")
    )
    gone = Thread.objects.get(thread_id="thread_GoneWithTheSource0001")
    factories.failed(gone, "not_found", "No thread found with id 'thread_GoneWithTheSource0001'")
    log_in(wide_page, live_server, "olga")
    wide_page.goto(live_server.url + THREADS)
    options = wide_page.locator("select[name=action] option").all_inner_texts()
    assert "Fetch from source" not in options and "Migrate" in options
    wide_page.goto(
        live_server.url + reverse("admin:migrations_app_thread_change", args=[thread.pk])
    )
    expect(wide_page.locator("input[name=button-fetch]")).to_have_count(0)
    wide_page.goto(live_server.url + reverse("admin:migrations_app_thread_change", args=[gone.pk]))
    expect(wide_page.locator("#actions")).to_have_count(0)
    expect(wide_page.locator("#remedy")).to_contain_text("load an export that holds this thread")
    wide_page.goto(live_server.url + reverse("admin:migrations_app_dashboard"))
    group = wide_page.locator("#failures tr.failure-group")
    expect(group.locator("input[type=submit]")).to_have_count(0)
    group.locator("text=Load an export that holds them").click()
    expect(wide_page.locator("#id_export_file")).to_be_visible()


# --- item 12: the list while a worker applies a bulk action ----------------------------------
def test_after_select_all_migrate_the_list_says_the_work_goes_on_in_the_background(
    page, live_server
):
    personas.operator("olga")
    factories.threads(120, prefix="thread_Bulk")
    log_in(page, live_server, "olga")
    page.goto(live_server.url + THREADS)
    page.check("#action-toggle")
    page.click("text=Select all 120 threads")
    page.select_option("select[name=action]", "migrate_selected")
    page.click("button[name=index]")
    expect(page.locator("#confirm-summary")).to_contain_text("will apply to 120 threads")
    page.click("input[value^='Yes, migrate 120']")
    expect(page.locator(".messagelist")).to_contain_text("handed to a worker")
    banner = page.locator("#bulk-in-progress")
    expect(banner).to_contain_text("migrate on 120 threads for olga: waiting for a worker")
    expect(banner).to_contain_text("the rows below show each thread as it is now")
    shot(page, f"walk-bulk-in-progress-{page.size[0]}")
    assert run_queued_bulk_task() == BulkAction.Status.DONE  # what the worker does
    page.click("#bulk-in-progress >> text=Reload")
    expect(page.locator("#bulk-in-progress")).to_have_count(0)
    expect(page.locator("#result_list .status-badge", has_text="Queued")).to_have_count(50)

"""The console under its Content-Security-Policy in Debian's Chromium: every admin page and the
console's interactive parts work (the `page` fixture of tests/test_browser.py fails any test on
a violation), and the policy really blocks inline script, inline style and other origins."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from migrations_app.models import Assistant, Message, Thread
from tests import personas, test_browser
from tests.admin_pages import admin_patterns, build_world
from tests.factories import source_message
from tests.test_browser import log_in, shot

# The browser and the `page` fixture that fails a test on any policy violation.
browser, page = test_browser.browser, test_browser.page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_every_admin_page_loads_without_a_policy_violation(page, live_server):
    world = build_world()
    personas.superuser()
    log_in(page, live_server, "root")
    urls = sorted({url for pattern in admin_patterns() for url in world.urls(pattern)})
    for url in urls:
        if "/logout/" in url or url.endswith(".csv"):
            continue  # logout is a POST; the mapping is a download, not a page
        response = page.goto(live_server.url + url)
        assert response.status < 500, url
        assert response.headers.get("content-security-policy"), url
    assert page.csp_violations == []


def test_the_console_works_under_the_policy(page, live_server):
    world = build_world()
    thread = Thread.objects.get(thread_id="thread_ladder_pending")
    image = source_message("msg_image", thread.thread_id, "an image", created_at=2)
    image["content"] += [
        {"type": "image_url", "image_url": {"url": "javascript:window.pwned=1", "detail": None}},
        {"type": "image_url", "image_url": {"url": "https://img.example/a.png", "detail": None}},
    ]
    Message.objects.create(
        thread=thread, message_id="msg_image", position=1, role="user", created_at=2, data=image
    )
    personas.superuser()
    log_in(page, live_server, "root")

    # The dashboard draws its bars in SVG: no style attribute for the policy to refuse.
    page.goto(f"{live_server.url}{reverse('admin:migrations_app_dashboard')}")
    expect(page.locator("svg.progress-bar rect.done")).to_have_count(1)

    # A confirmation page's "No, take me back" (Django's cancel.js) returns to the list.
    page.goto(f"{live_server.url}{reverse('admin:migrations_app_thread_changelist')}")
    expect(page.locator(".status-badge.status-succeeded").first).to_be_visible()
    page.check("#action-toggle")
    page.select_option("select[name=action]", "migrate_selected")
    page.click("button[name=index]")
    expect(page.locator("#confirm-summary")).to_contain_text("will apply to")
    page.click("text=No, take me back")
    expect(page.locator("#changelist-form")).to_be_visible()
    assert Thread.objects.filter(status="queued").count() == 1, "nothing was queued"

    # The thread page: an http(s) image is a link, a javascript: one is text.
    page.goto(f"{live_server.url}{reverse('admin:migrations_app_thread_change', args=[thread.pk])}")
    source = page.locator("#compare td.source")
    expect(source.locator("a[href='https://img.example/a.png']")).to_have_count(1)
    expect(source.locator(".unlinked-url")).to_have_text("javascript:window.pwned=1")
    expect(page.locator("#compare a[href^='javascript']")).to_have_count(0)
    shot(page, "thread-page-under-csp")

    # The import form, the batch page, the assistant page.
    page.goto(f"{live_server.url}{reverse('admin:migrations_app_importbatch_import')}")
    page.fill("#id_pasted", "thread_CspImport000000000001")
    page.click("input[value=Import]")
    expect(page.locator(".messagelist")).to_contain_text("Import batch")
    assistant = world.objects[Assistant]
    page.goto(
        f"{live_server.url}{reverse('admin:migrations_app_assistant_change', args=[assistant.pk])}"
    )
    expect(page.locator("#config")).to_be_visible()
    assert page.evaluate("typeof window.pwned") == "undefined"


def test_the_policy_blocks_inline_script_inline_style_and_other_origins(page, live_server):
    personas.superuser()
    log_in(page, live_server, "root")
    page.evaluate(
        """() => {
        window.seen = [];
        document.addEventListener(
            "securitypolicyviolation", (e) => window.seen.push(e.violatedDirective));
        document.body.insertAdjacentHTML("beforeend",
            '<img src="/static/admin/img/icon-yes.svg" onload="window.pwned = 1">');
        const script = document.createElement("script");
        script.textContent = "window.pwned = 2";
        document.body.appendChild(script);
        document.body.setAttribute("style", "background: red");
        new Image().src = "https://third-party.example/pixel.png";
    }"""
    )
    page.wait_for_function("window.seen.length >= 4")
    seen = page.evaluate("window.seen")
    assert {d.split("-")[0] for d in seen} >= {"script", "style", "img"}, seen
    assert page.evaluate("typeof window.pwned") == "undefined"
    page.evaluate("0")  # the fixture's reports have arrived
    assert len(page.csp_violations) >= 4, "the page fixture saw the violations"
    page.csp_violations.clear()  # expected here; any other test fails on them

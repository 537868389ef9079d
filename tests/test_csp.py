"""The Content-Security-Policy header and the link filter, without a browser (the browser tests,
through the `page` fixture of tests/test_browser.py, fail on any violation)."""

import pytest
from django.template import Context, Template
from django.urls import reverse

from migrations_app.models import Message, Thread
from migrations_app.templatetags.console import external_link, http_url
from tests import personas
from tests.admin_pages import admin_patterns, build_world
from tests.factories import source_message, source_thread

pytestmark = pytest.mark.django_db


def directives(header: str) -> dict[str, list[str]]:
    parsed = {}
    for part in header.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def test_every_admin_page_carries_a_policy_without_inline_script_style_or_other_origins(client):
    world = build_world()
    client.force_login(personas.superuser())
    urls = {url for pattern in admin_patterns() for url in world.urls(pattern)}
    urls.add(reverse("admin:login"))
    for url in sorted(urls):
        response = client.get(url)
        policy = directives(response["Content-Security-Policy"])
        assert policy["default-src"] == ["'self'"], url
        assert policy["script-src"] == ["'self'"], url
        assert policy["style-src"] == ["'self'"], url
        assert policy["object-src"] == ["'none'"], url
        assert policy["frame-ancestors"] == ["'none'"], url
    client.logout()
    for url in [reverse("admin:login"), "/no-such-page/"]:
        assert directives(client.get(url)["Content-Security-Policy"])["script-src"] == ["'self'"]


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a.png",
        "https://files.example.com/image?id=1&size=2",
        "HTTPS://EXAMPLE.COM/A.PNG",
    ],
)
def test_http_and_https_urls_become_links(url):
    assert http_url(url) == url
    assert 'href="' in external_link(url)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        " javascript:alert(1)",
        "\x01javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "data:image/svg+xml,<svg onload=alert(1)>",
        "vbscript:msgbox(1)",
        "//evil.example/x.png",
        "/admin/",
        "http:/x",
        "https://example.com/a b",
        "",
        None,
        42,
    ],
)
def test_any_other_url_is_shown_as_text_never_as_a_link(url):
    assert http_url(url) == ""
    rendered = Template("{% load console %}{{ url|external_link }}").render(Context({"url": url}))
    assert "<a" not in rendered and "href" not in rendered
    if isinstance(url, str) and url.strip():
        assert "unlinked-url" in rendered


def test_a_url_is_escaped_inside_and_outside_the_link():
    rendered = external_link('https://example.com/"><script>alert(1)</script>')
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered
    rendered = external_link('javascript:"><script>alert(1)</script>')
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered


def test_the_thread_page_links_only_http_image_urls(client):
    thread = Thread.objects.create(
        thread_id="thread_links", data=source_thread("thread_links"), message_count=1
    )
    data = source_message("msg_links", "thread_links", "see the images")
    data["content"] += [
        {"type": "image_url", "image_url": {"url": url, "detail": None}}
        for url in ["https://img.example/ok.png", "javascript:alert(1)", "data:image/png;base64,AA"]
    ]
    Message.objects.create(
        thread=thread, message_id="msg_links", position=0, role="user", created_at=1, data=data
    )
    client.force_login(personas.auditor())
    html = client.get(reverse("admin:migrations_app_thread_change", args=[thread.pk])).text
    assert '<a href="https://img.example/ok.png"' in html
    assert 'href="javascript:' not in html and 'href="data:' not in html
    assert '<span class="unlinked-url">javascript:alert(1)</span>' in html
    assert '<span class="unlinked-url">data:image/png;base64,AA</span>' in html


def test_the_csrf_failure_page_has_no_inline_style(client):
    strict = type(client)(enforce_csrf_checks=True)
    response = strict.post(reverse("admin:login"), {"username": "x", "password": "y"})
    assert response.status_code == 403
    assert b"<style" not in response.content and b"style=" not in response.content
    assert b"CSRF verification failed" in response.content

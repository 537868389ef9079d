"""The thread page's compare view: each source message beside the item(s) it became, tool-call
pairs beside the run that made them, skipped messages marked, paged for long threads."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from migrations_app import intake
from migrations_app.models import Attempt, Conversation, Thread
from tests.factories import source_message, source_thread

pytestmark = pytest.mark.django_db

THREAD_ID = "thread_compare"


def text_message(message_id, text, role="user", created_at=1, run_id=None):
    message = source_message(message_id, THREAD_ID, text, role=role, created_at=created_at)
    message["run_id"] = run_id
    return message


def tool_step(step_id, run_id, calls, created_at):
    return {
        "id": step_id,
        "object": "thread.run.step",
        "created_at": created_at,
        "run_id": run_id,
        "thread_id": THREAD_ID,
        "type": "tool_calls",
        "status": "completed",
        "step_details": {"type": "tool_calls", "tool_calls": calls},
    }


def function(call_id, name, output):
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": '{"order": 48213}', "output": output},
    }


def store(messages, steps=(), thread_id=THREAD_ID):
    intake.store_bundles(
        [
            {
                "thread": source_thread(thread_id),
                "messages": list(messages),
                "runs": [],
                "run_steps": list(steps),
            }
        ]
    )
    return Thread.objects.get(thread_id=thread_id)


@pytest.fixture
def conversation_with_tools():
    empty = text_message("msg_empty", "", created_at=4)
    empty["content"] = []
    messages = [
        text_message("msg_question", "Where is my order?", created_at=1),
        text_message("msg_answer", "It shipped on Monday.", "assistant", 3, run_id="run_1"),
        empty,
        text_message("msg_thanks", "Thanks!", created_at=5),
    ]
    steps = [
        tool_step("step_lookup", "run_1", [function("call_1", "get_order", '{"s": "shipped"}')], 2),
        tool_step("step_code", "run_1", [{"id": "call_2", "type": "code_interpreter"}], 3),
    ]
    return store(messages, steps)


def page(client, thread, **params):
    url = reverse("admin:migrations_app_thread_change", args=[thread.pk])
    response = client.get(url, params)
    assert response.status_code == 200
    return response


def row_shape(row):
    return [
        (part.source_id, [item.data["type"] for item in part.items], part.skipped)
        for part in row.parts
    ]


def test_each_row_is_a_source_message_beside_the_item_it_became(
    admin_client, conversation_with_tools
):
    rows = page(admin_client, conversation_with_tools).context["rows"]
    assert [row_shape(row) for row in rows] == [
        [("msg_question", ["message"], False)],
        [
            ("step_lookup", ["function_call", "function_call_output"], False),
            ("step_code", [], True),
            ("msg_answer", ["message"], False),
        ],
        [("msg_empty", [], True)],
        [("msg_thanks", ["message"], False)],
    ]


def test_items_are_numbered_in_conversation_order(admin_client, conversation_with_tools):
    rows = page(admin_client, conversation_with_tools).context["rows"]
    positions = [item.position for row in rows for part in row.parts for item in part.items]
    assert positions == [1, 2, 3, 4, 5]


def test_tool_calls_show_beside_the_run_that_made_them(admin_client, conversation_with_tools):
    html = page(admin_client, conversation_with_tools).content.decode()
    row = html[html.index('id="row-2"') : html.index('id="row-3"')]
    assert "get_order(" in row and "It shipped on Monday." in row
    assert row.count('class="conv-item function_call"') == 1
    assert row.count('class="conv-item function_call_output"') == 1
    assert "code_interpreter call call_2 not sent" in row


def test_a_skipped_message_is_marked_not_sent_with_its_warning(
    admin_client, conversation_with_tools
):
    html = page(admin_client, conversation_with_tools).content.decode()
    row = html[html.index('id="row-3"') : html.index('id="row-4"')]
    assert 'class="compare-part message skipped"' in row
    assert "Not sent: this message becomes no item" in row
    assert "message with no content skipped" in row


def test_every_warning_links_to_its_row(admin_client, conversation_with_tools):
    html = page(admin_client, conversation_with_tools).content.decode()
    assert '<a href="?page=1#row-3">row 3</a> · msg_empty: message with no content skipped' in html


def test_raw_json_of_source_and_items_waits_behind_a_summary(admin_client, conversation_with_tools):
    html = page(admin_client, conversation_with_tools).content.decode()
    assert html.count('<details class="json"><summary>JSON</summary>') == 4 + 2 + 5


def test_a_long_thread_is_shown_fifty_rows_a_page(admin_client):
    thread = store(
        [text_message(f"msg_{n:03}", f"message {n}", created_at=n) for n in range(1, 121)]
    )
    first = page(admin_client, thread)
    assert [row.number for row in first.context["rows"]] == list(range(1, 51))
    html = first.content.decode()
    assert "Rows 1–50 of 120" in html and 'href="?page=3#compare"' in html
    assert html.count('class="bubble ') == 50
    last = page(admin_client, thread, page=3)
    assert [row.number for row in last.context["rows"]] == list(range(101, 121))
    assert "message 120" in last.content.decode()


def test_a_page_past_the_end_shows_the_last_rows(admin_client):
    thread = store([text_message(f"msg_{n}", "x", created_at=n) for n in range(1, 61)])
    assert page(admin_client, thread, page=99).context["page"].number == 2


def test_items_the_live_conversation_holds_are_marked_uploaded(
    admin_client, conversation_with_tools
):
    Thread.objects.filter(pk=conversation_with_tools.pk).update(items_committed=3, items_total=5)
    rows = page(admin_client, conversation_with_tools).context["rows"]
    marks = [item.committed for row in rows for part in row.parts for item in part.items]
    assert marks == [True, True, True, False, False]


def test_the_items_shown_are_built_with_the_live_conversations_options(
    admin_client, conversation_with_tools
):
    Conversation.objects.create(
        thread=conversation_with_tools,
        conversation_id="conv_no_tools",
        options={"tool_calls": False, "attachments": True, "source_thread_id": True},
    )
    rows = page(admin_client, conversation_with_tools).context["rows"]
    kinds = [item.data["type"] for row in rows for part in row.parts for item in part.items]
    assert kinds == ["message", "message", "message"]


def test_an_image_url_that_is_not_a_web_address_is_never_a_link(admin_client):
    message = text_message("msg_img", "look")
    message["content"].append(
        {"type": "image_url", "image_url": {"url": "javascript:alert(1)", "detail": None}}
    )
    html = page(admin_client, store([message])).content.decode()
    assert 'href="javascript:' not in html
    assert '<span class="unlinked-url">javascript:alert(1)</span>' in html


def test_a_thread_not_fetched_says_so_instead_of_rows(admin_client):
    intake.import_thread_ids(["thread_unfetched"], batch=intake.ImportBatch(source="paste"))
    html = page(admin_client, Thread.objects.get()).content.decode()
    assert "thread_unfetched has not been fetched from the source yet" in html


def test_the_http_status_is_said_once(admin_client, conversation_with_tools):
    message = "The API does not know this object (HTTP 404): No thread found"
    Thread.objects.filter(pk=conversation_with_tools.pk).update(
        status="failed", error_kind="not_found", error_message=message, error_http_status=404
    )
    Attempt.objects.create(
        thread=conversation_with_tools,
        action="fetch",
        outcome="failed",
        error_message=message,
        http_status=404,
    )
    Attempt.objects.create(
        thread=conversation_with_tools,
        action="migrate",
        outcome="failed",
        error_message="Bad gateway",
        http_status=502,
    )
    html = page(admin_client, conversation_with_tools).content.decode()
    assert html.count("HTTP 404") == 2  # the error box and the history row, once each
    assert "Bad gateway (HTTP 502)" in html


def test_a_long_thread_page_costs_a_fixed_number_of_queries(admin_client):
    thread = store(
        [text_message(f"msg_{n:03}", f"message {n}", created_at=n) for n in range(1, 251)]
    )
    url = reverse("admin:migrations_app_thread_change", args=[thread.pk])
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(url, {"page": 4}).status_code == 200
    assert len(queries) <= 14, [q["sql"][:80] for q in queries.captured_queries]

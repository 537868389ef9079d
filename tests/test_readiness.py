"""Continuation readiness against the sandbox: each migrated conversation counted with
POST /v1/responses/input_tokens for its assistant's model, compared with the model's context
window, and the retiring models named; the flags in the threads list, on the dashboard and in
`manage.py readiness`."""

import io
import re
from datetime import date
from pathlib import Path

import openai
import pytest
from django.core.management import call_command
from django.urls import reverse

from migrations_app import openai_client, readiness
from migrations_app.models import Assistant, Conversation, Thread
from migrations_app.sandbox.state import item_tokens

pytestmark = pytest.mark.django_db


# --- the table (pure) -------------------------------------------------------------------------
def test_the_models_table_names_its_sources_and_the_day_it_was_checked():
    table = readiness.model_table()
    assert table.checked == date(2026, 11, 26)
    assert any("deprecations" in source for source in table.sources)
    assert any("models/" in source for source in table.sources)
    text = Path(readiness.TABLE).read_text()
    assert text.startswith("# Models an assistant may name")


@pytest.mark.parametrize(
    ("model", "entry"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-mini", "gpt-4.1-mini"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("gpt-4", "gpt-4"),
        ("gpt-5.4", None),
        ("", None),
    ],
)
def test_a_snapshot_takes_its_familys_entry_unless_it_has_its_own(model, entry):
    limits = readiness.model_table().limits(model)
    assert (limits.name if limits else None) == entry


def test_the_gpt_4o_and_gpt_4_1_families_shut_down_on_14_january_2027():
    table = readiness.model_table()
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4o-2024-11-20"):
        assert table.shutdown(model) == date(2027, 1, 14), model


def test_the_input_limit_leaves_room_for_the_longest_answer():
    assert readiness.model_table().limits("gpt-5").input_limit == 272_000
    assert readiness.model_table().limits("gpt-4o").input_limit == 111_616


def test_a_retirement_is_said_in_the_future_or_the_past():
    assert readiness.retirement_phrase("gpt-4o", date(2027, 1, 14), date(2026, 12, 1)) == (
        "the model gpt-4o retires on 2027-01-14"
    )
    assert readiness.retirement_phrase("o1", date(2026, 10, 23), date(2026, 12, 1)) == (
        "the model o1 retired on 2026-10-23"
    )


# --- the sandbox answers input_tokens ---------------------------------------------------------
def test_the_sandbox_counts_a_conversations_tokens_deterministically(sandbox, client_for):
    client = client_for()
    conversation = client.conversations.create(
        items=[{"type": "message", "role": "user", "content": "Hello there, sandbox!"}]
    )
    counted = client.responses.input_tokens.count(model="gpt-4o", conversation=conversation.id)
    assert counted.input_tokens == 3 + 4 + 6  # priming, a message, 21 characters / 4
    assert counted.input_tokens == 3 + item_tokens({"content": "Hello there, sandbox!"})
    again = openai_client.count_input_tokens(client, "gpt-4o", conversation.id)
    assert again == counted.input_tokens


def test_the_sandbox_can_be_told_a_size_and_to_lose_a_conversation(sandbox, client_for):
    import httpx2

    client = client_for()
    conversation = client.conversations.create()
    tell = f"{sandbox.url.removesuffix('/v1')}/_sandbox/conversations/{conversation.id}"
    assert httpx2.post(tell, json={"input_tokens": 250_000}).status_code == 200
    assert openai_client.count_input_tokens(client, "gpt-4o", conversation.id) == 250_000
    assert httpx2.post(tell, json={"lose": "nowhere"}).status_code == 400
    assert httpx2.post(tell, json={"lose": "conversation"}).status_code == 200
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list(conversation.id)


def test_the_sandbox_refuses_a_count_without_a_model(sandbox, client_for):
    client = client_for()
    conversation = client.conversations.create()
    with pytest.raises(openai.BadRequestError, match="model"):
        client.responses.input_tokens.count(conversation=conversation.id)


# --- counting migrated conversations ----------------------------------------------------------
@pytest.fixture
def migrated(migrated, settings):
    settings.API_REQUESTS_PER_MINUTE = 10**7  # the shared budget never makes the test wait
    return migrated


def test_a_migrated_conversation_is_counted_for_its_assistants_model(migrated, sandbox):
    (thread,) = migrated()
    counted = readiness.count_uncounted()
    assert (counted.counted, counted.exceeding) == (1, 0)
    conversation = Conversation.objects.live().get(thread=thread)
    model = thread.assistant.data["model"]
    assert conversation.tokens_model == model
    assert conversation.input_tokens == sandbox.state.input_tokens(thread.conversation_id)
    assert conversation.exceeds_context is False
    assert sandbox.state.request_counts["POST count_input_tokens"] == 1


def test_a_conversation_too_long_for_its_model_is_flagged(migrated, sandbox):
    (thread,) = migrated()
    limits = readiness.model_table().limits(thread.assistant.model)
    sandbox.state.token_sizes[thread.conversation_id] = limits.input_limit + 1
    assert readiness.count_uncounted().exceeding == 1
    assert list(readiness.exceeding_threads()) == [thread]


def test_a_conversation_the_api_cannot_count_keeps_the_reason_and_waits(migrated, sandbox):
    (thread,) = migrated()
    sandbox.state.lose(thread.conversation_id, "conversation")  # the count answers 404
    counted = readiness.count_uncounted()
    assert counted.failed == 1
    conversation = Conversation.objects.live().get(thread=thread)
    assert conversation.tokens_counted_at is not None and "HTTP 404" in conversation.tokens_error
    assert readiness.count_uncounted().failed == 0  # not asked again before the next re-read


def test_a_thread_without_an_assistant_is_set_aside_with_the_reason(migrated):
    (thread,) = migrated()
    Thread.objects.filter(pk=thread.pk).update(assistant=None)
    assert readiness.count_uncounted().no_model == 1
    assert "no assistant" in Conversation.objects.live().get(thread=thread).tokens_error


# --- the flags: filters, dashboard, command ---------------------------------------------------
def on_model(thread, model):
    """`thread`'s assistant: one of its own, on `model`."""
    assistant = Assistant.objects.create(
        assistant_id=f"asst_{thread.pk}",
        model=model,
        data={"id": f"asst_{thread.pk}", "model": model},
    )
    Thread.objects.filter(pk=thread.pk).update(assistant=assistant)


@pytest.fixture
def flagged(migrated):
    """Three migrated threads: one too long for its model, one on gpt-4o (which retires on
    2027-01-14), one not counted yet."""
    long, retiring, uncounted = migrated(3)
    on_model(long, "gpt-5.4")
    on_model(retiring, "gpt-4o")
    on_model(uncounted, "gpt-5.4")
    counted = {"tokens_counted_at": "2026-12-01T00:00Z"}
    Conversation.objects.filter(thread=long).update(
        input_tokens=900_000, tokens_model="gpt-4.1", exceeds_context=True, **counted
    )
    Conversation.objects.filter(thread=retiring).update(
        input_tokens=1_000, tokens_model="gpt-4o", exceeds_context=False, **counted
    )
    return long, retiring, uncounted


def listed(client, query):
    response = client.get(reverse("admin:migrations_app_thread_changelist") + query)
    assert response.status_code == 200
    return {thread.thread_id for thread in response.context["cl"].result_list}


def test_each_flag_has_its_filter_in_the_threads_list(flagged, client, auditor):
    long, retiring, uncounted = flagged
    assert listed(client, "?continuation=exceeds") == {long.thread_id}
    assert listed(client, "?continuation=retires-2027-01-14") == {retiring.thread_id}
    assert listed(client, "?continuation=uncounted") == {uncounted.thread_id}
    page = client.get(reverse("admin:migrations_app_thread_changelist")).text
    assert re.search(r"Models? [^<]*gpt-4o[^<]* retires? on 2027-01-14", page)
    assert "Exceeds the context (needs truncation=&quot;auto&quot;)" in page


def test_the_dashboard_has_a_line_for_each_flag(flagged, client, auditor):
    page = client.get(reverse("admin:migrations_app_dashboard")).text
    assert 'id="applications-side"' in page
    assert "Exceeds the context" in page and "?continuation=exceeds" in page
    line = re.search(r'class="retires-line">(Models? [^<]*gpt-4o[^<]* on 2027-01-14)', page)
    assert line and "?continuation=retires-2027-01-14" in page
    assert "1 conversation</a> not counted yet" in page
    assert "Lost at the destination: none." in page


def test_the_readiness_command_prints_the_flags(flagged):
    out = io.StringIO()
    call_command("readiness", stdout=out)
    text = out.getvalue()
    assert "Continuation readiness of 3 migrated threads" in text
    assert 'exceeds the context: 1 thread — apps must send truncation="auto"' in text
    assert "the model gpt-4o retires on 2027-01-14: 1 thread migrated" in text
    assert "not counted yet: 1 conversation" in text


def test_the_readiness_command_lists_the_threads_of_a_flag(flagged):
    long, _, _ = flagged
    out = io.StringIO()
    call_command("readiness", "--threads", "exceeds", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "thread_id,conversation_id,model,input_tokens,flag"
    assert lines[1:] == [f"{long.thread_id},{long.conversation_id},gpt-5.4,900000,exceeds"]


def test_the_readiness_command_counts_first_when_asked(flagged):
    err = io.StringIO()
    call_command("readiness", "--count", "10", stdout=io.StringIO(), stderr=err)
    assert "Counted 1 conversations" in err.getvalue()
    assert not readiness.uncounted().exists()

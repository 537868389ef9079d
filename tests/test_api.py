"""The lookup API for applications, through HTTP: tokens and their revocation, the rate limit,
single and bulk lookups, the OpenAPI description, and "prioritize on lookup" against a deep
task queue."""

import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ

from migrations_app import api_tokens, states
from migrations_app.broker import AHEAD_LOCK, OrderedORM
from migrations_app.models import ApiToken, Assistant, Attempt, Conversation, Thread
from tests import factories

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[1]
NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_gate():
    """Each test starts with no requests held by this process's gate (as a new process)."""
    api_tokens.gate().forget()
    yield
    api_tokens.gate().forget()


@pytest.fixture
def clock():
    with time_machine.travel(NOON, tick=False) as traveller:
        yield traveller


def new_token(application="Support widget", **options):
    _, raw = api_tokens.create_token(application, **options)
    return raw


def bearer(raw):
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def get(client, path, raw):
    return client.get(path, **bearer(raw))


def post_lookup(client, raw, thread_ids):
    return client.post(
        "/api/v1/threads/lookup",
        {"thread_ids": thread_ids},
        content_type="application/json",
        **bearer(raw),
    )


def migrated(thread_id, conversation_id, model="gpt-5.4", items=4, **conversation):
    assistant, _ = Assistant.objects.get_or_create(
        assistant_id=f"asst_{model}",
        defaults={"model": model, "data": {"id": f"asst_{model}", "model": model}},
    )
    thread = Thread.objects.create(thread_id=thread_id, assistant=assistant, items_total=items)
    factories.succeeded(thread)
    factories.give_conversation(
        thread, conversation_id, verified_at=NOON, verified_item_count=items, **conversation
    )
    return thread


# --- tokens ----------------------------------------------------------------------------------
def test_a_request_without_a_token_is_refused_with_401(client):
    response = client.get("/api/v1/threads/thread_x")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["detail"]


def test_a_request_with_an_unknown_token_is_refused_with_401(client):
    new_token()
    assert get(client, "/api/v1/threads/thread_x", "mcl_not-a-token").status_code == 401


def test_only_the_hash_and_the_first_characters_of_a_token_are_stored():
    token, raw = api_tokens.create_token("Support widget")
    assert raw.startswith("mcl_") and len(raw) > 40
    assert token.key_hash == api_tokens.hash_token(raw)
    assert raw not in str(list(ApiToken.objects.values())) and raw[:12] == token.prefix


def test_create_api_token_prints_a_token_once_and_it_works(client):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", "Billing app", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    assert "shown this once" in err.getvalue() and "Billing app" in err.getvalue()
    assert get(client, "/api/v1/threads/thread_x", raw).status_code == 404  # admitted: unknown id
    token = ApiToken.objects.get()
    assert token.application == "Billing app" and raw not in token.key_hash


def test_a_token_revoked_by_an_operator_is_refused_at_its_next_request(client, clock):
    raw = new_token()
    api = client.__class__()
    assert get(api, "/api/v1/threads/thread_x", raw).status_code == 404
    token = ApiToken.objects.get()
    client.force_login(factories_operator())
    page = reverse("admin:migrations_app_apitoken_revoke", args=[token.pk])
    assert "Yes, revoke it" in client.get(page).text
    assert client.post(page).status_code == 302
    clock.shift(api_tokens.HORIZON)  # what this process took before the revocation has lapsed
    assert get(api, "/api/v1/threads/thread_x", raw).status_code == 401
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by.username == "olga"


def factories_operator():
    from tests import personas

    return personas.operator()


def test_an_operator_creates_a_token_in_the_admin_and_sees_it_once(client):
    client.force_login(factories_operator())
    response = client.post(
        reverse("admin:migrations_app_apitoken_add"),
        {"application": "Mobile app", "requests_per_minute": "120", "prioritize_on_lookup": "on"},
    )
    assert response.status_code == 302
    page = client.get(response["Location"]).text
    raw = re.search(r'<code class="token-value">(mcl_[^<]+)</code>', page).group(1)
    assert "not shown again" in page
    assert "token-value" not in client.get(response["Location"]).text  # once only
    token = ApiToken.objects.get()
    assert (token.application, token.requests_per_minute, token.prioritize_on_lookup) == (
        "Mobile app",
        120,
        True,
    )
    assert token.created_by.username == "olga"
    assert get(client.__class__(), "/api/v1/threads/thread_x", raw).status_code == 404


def test_the_last_used_time_is_written_with_the_budget_not_once_per_request(client, clock):
    raw = new_token(requests_per_minute=6000)  # a quarter of a second: 25 requests per claim
    with CaptureQueriesContext(connection) as queries:
        for _ in range(20):
            assert get(client, "/api/v1/threads/thread_x", raw).status_code == 404
    updates = [q for q in queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1
    assert ApiToken.objects.get().last_used_at == NOON


# --- the rate limit ---------------------------------------------------------------------------
def test_a_token_over_its_rate_gets_429_with_retry_after_then_is_admitted_again(client, clock):
    raw = new_token(requests_per_minute=60)  # bursts of 10, then one a second
    statuses = [get(client, "/api/v1/threads/thread_x", raw).status_code for _ in range(11)]
    assert statuses == [404] * 10 + [429]
    refused = get(client, "/api/v1/threads/thread_x", raw)
    assert refused.status_code == 429 and refused["Retry-After"] == "1"
    assert "retry after 1 s" in refused.json()["detail"]
    clock.shift(1)
    assert get(client, "/api/v1/threads/thread_x", raw).status_code == 404


def test_the_rate_limit_holds_across_web_processes(clock):
    """Two processes (two gates) share one token's budget through its database row."""
    raw = new_token(requests_per_minute=600)  # bursts of 100, a quarter second = 2 per claim
    first, second = api_tokens.TokenGate(), api_tokens.TokenGate()
    admitted = 0
    for index in range(300):
        try:
            (first if index % 2 else second).admit(raw)
            admitted += 1
        except api_tokens.Throttled:
            pass
    assert admitted == 100


def test_requests_a_process_took_and_did_not_use_are_given_back(clock):
    raw = new_token(requests_per_minute=600)
    gate = api_tokens.TokenGate()
    for _ in range(51):
        gate.admit(raw)  # takes 52 of the burst of 100, two at a time; uses 51
    clock.shift(api_tokens.HORIZON)  # the one left lapses; the rate adds 2.5 meanwhile
    admitted = 0
    while True:
        try:
            gate.admit(raw)
        except api_tokens.Throttled:
            break
        admitted += 1
    assert admitted == 51  # 100 - 51 used + 2.5 (were it kept: 100 - 52 + 2.5, 50)


def test_tokens_have_budgets_of_their_own(client, clock):
    slow, other = new_token(requests_per_minute=6), new_token("Other app")
    assert get(client, "/api/v1/threads/thread_x", slow).status_code == 404
    assert get(client, "/api/v1/threads/thread_x", slow).status_code == 429
    assert get(client, "/api/v1/threads/thread_x", other).status_code == 404


# --- lookups ----------------------------------------------------------------------------------
def test_a_migrated_thread_answers_its_conversation(client):
    migrated("thread_one", "conv_one", items=7)
    response = get(client, "/api/v1/threads/thread_one", new_token())
    assert response.status_code == 200
    assert response.json() == {
        "thread_id": "thread_one",
        "conversation_id": "conv_one",
        "status": "succeeded",
        "migrated_at": "2026-11-26T12:00:00+00:00",
        "items": 7,
        "warnings": [],
    }


def test_an_unknown_thread_is_a_404_that_names_it(client):
    response = get(client, "/api/v1/threads/thread_nope", new_token())
    assert response.status_code == 404
    assert response.json() == {
        "detail": "No thread with id 'thread_nope' is known to this console.",
        "thread_id": "thread_nope",
    }


def test_a_thread_not_migrated_yet_has_no_conversation_to_continue(client):
    thread = Thread.objects.create(thread_id="thread_pending")
    factories.give_conversation(thread, "conv_half_uploaded")  # uploading: not verified
    body = get(client, "/api/v1/threads/thread_pending", new_token()).json()
    assert (body["status"], body["conversation_id"], body["migrated_at"]) == ("pending", None, None)


def test_the_warnings_say_what_stops_a_conversation_from_continuing(client, clock):
    migrated("thread_long", "conv_long", model="gpt-4o", input_tokens=150_000,
             tokens_model="gpt-4o", exceeds_context=True)  # fmt: skip
    Thread.objects.filter(thread_id="thread_long").update(warning_count=2)
    body = get(client, "/api/v1/threads/thread_long", new_token()).json()
    assert [w["code"] for w in body["warnings"]] == [
        "exceeds_context",
        "model_retires",
        "conversion",
    ]
    messages = [w["message"] for w in body["warnings"]]
    assert "150,000 input tokens" in messages[0] and 'truncation="auto"' in messages[0]
    assert messages[1] == "The model gpt-4o retires on 2027-01-14"
    assert messages[2].startswith("2 parts of the thread could not be migrated")


def test_a_thread_lost_at_the_destination_says_so(client):
    thread = migrated("thread_lost", "conv_lost")
    assert states.mark_lost(thread.pk, "conv_lost", "Lost at the destination: gone (HTTP 404).")
    body = get(client, "/api/v1/threads/thread_lost", new_token()).json()
    assert body["status"] == "failed"
    assert body["warnings"][0]["code"] == "lost_at_destination"


def test_a_bulk_lookup_answers_known_and_unknown_ids_in_the_order_asked(client):
    migrated("thread_a", "conv_a")
    migrated("thread_b", "conv_b")
    raw = new_token()
    response = post_lookup(client, raw, ["thread_b", "thread_zzz", "thread_a", "thread_b"])
    assert response.status_code == 200
    body = response.json()
    assert [t["thread_id"] for t in body["threads"]] == ["thread_b", "thread_a"]
    assert [t["conversation_id"] for t in body["threads"]] == ["conv_b", "conv_a"]
    assert body["unknown"] == ["thread_zzz"] and body["queued_ahead"] == []


def test_a_bulk_lookup_of_1000_ids_is_one_query_after_the_token(client, clock):
    ids = [t.thread_id for t in factories.threads(1000, prefix="thread_bulk")]
    raw = new_token()
    post_lookup(client, raw, ["thread_warm"])  # the token's claim (one UPDATE), done
    with CaptureQueriesContext(connection) as queries:
        response = post_lookup(client, raw, ids)
    assert response.status_code == 200 and len(response.json()["threads"]) == 1000
    assert len(queries) == 1, [q["sql"][:80] for q in queries]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"thread_ids": [f"thread_{i}" for i in range(1001)]}, "at most 1000"),
        ({"thread_ids": []}, "at least 1"),
        ({"ids": ["thread_a"]}, "thread_ids"),
    ],
)
def test_a_bulk_lookup_outside_1_to_1000_ids_is_refused_with_the_reason(client, body, problem):
    response = client.post(
        "/api/v1/threads/lookup", body, content_type="application/json", **bearer(new_token())
    )
    assert response.status_code == 422
    assert problem in str(response.json())


def test_the_openapi_description_is_served_at_schema(client):
    response = client.get("/api/v1/schema")
    assert response.status_code == 200
    schema = response.json()
    assert {"/api/v1/threads/{thread_id}", "/api/v1/threads/lookup"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["ApplicationToken"]["scheme"] == "bearer"


# --- prioritize on lookup ---------------------------------------------------------------------
def deep_queue(count=60):
    """`count` pending threads queued as staff would: one task per 8, ahead of anything later."""
    pks = [t.pk for t in factories.threads(count, prefix="thread_deep")]
    states.queue(pks, "migrate", group="migrate deep", actor_label="test")
    return pks


def next_task_threads():
    """The threads of the task the cluster's broker hands out next."""
    from django_q.signing import SignedPackage

    broker = OrderedORM(list_key=Conf.CLUSTER_NAME)
    taken = broker.dequeue()
    assert taken, "the queue is empty"
    return SignedPackage.loads(taken[0][1])["args"][0]


def test_a_pending_thread_looked_up_is_queued_ahead_of_a_deep_queue(client):
    deep_queue()
    wanted = Thread.objects.create(thread_id="thread_wanted")
    raw = new_token("Support widget", prioritize_on_lookup=True)
    body = get(client, "/api/v1/threads/thread_wanted", raw).json()
    assert body["status"] == "queued"
    assert next_task_threads() == [wanted.pk]
    history = Attempt.objects.get(thread=wanted)
    assert (history.action, history.outcome, history.actor_label) == (
        "migrate",
        "queued",
        "api: Support widget",
    )
    assert history.detail["ahead"] is True


def test_a_thread_queued_deep_comes_ahead_when_looked_up(client):
    pks = deep_queue()
    deepest = Thread.objects.get(pk=pks[-1])
    old_task = deepest.queued_task
    raw = new_token("Support widget", prioritize_on_lookup=True)
    response = post_lookup(client, raw, [deepest.thread_id])
    assert response.json()["queued_ahead"] == [deepest.thread_id]
    deepest.refresh_from_db()
    assert deepest.queued_task != old_task
    assert OrmQ.objects.get(pk=deepest.queued_task).lock == AHEAD_LOCK
    assert next_task_threads() == [deepest.pk]
    assert Attempt.objects.filter(thread=deepest, detail__was_queued=True).count() == 1


def test_looking_up_a_thread_again_does_not_queue_it_ahead_again(client):
    deep_queue(16)
    Thread.objects.create(thread_id="thread_again")
    raw = new_token("Support widget", prioritize_on_lookup=True)
    for _ in range(3):
        get(client, "/api/v1/threads/thread_again", raw)
    assert OrmQ.objects.filter(lock=AHEAD_LOCK).count() == 1


def test_a_token_without_prioritize_only_reads(client):
    deep_queue(16)
    Thread.objects.create(thread_id="thread_read_only")
    before = OrmQ.objects.count()
    body = get(client, "/api/v1/threads/thread_read_only", new_token()).json()
    assert body["status"] == "pending" and OrmQ.objects.count() == before


def test_failed_and_cancelled_threads_are_left_to_staff(client):
    factories.failed(Thread.objects.create(thread_id="thread_failed"))
    factories.in_state(Thread.objects.create(thread_id="thread_cancelled"), "cancelled")
    raw = new_token("Support widget", prioritize_on_lookup=True)
    body = post_lookup(client, raw, ["thread_failed", "thread_cancelled"]).json()
    assert body["queued_ahead"] == []
    assert [t["status"] for t in body["threads"]] == ["failed", "cancelled"]


def test_the_ordered_broker_hands_out_ordinary_tasks_oldest_first(clock):
    first = deep_queue(8)
    clock.shift(1)
    later = [t.pk for t in factories.threads(8, prefix="thread_later")]
    states.queue(later, "migrate", group="later", actor_label="test")
    clock.shift(1)
    assert sorted(next_task_threads()) == sorted(first)
    assert sorted(next_task_threads()) == sorted(later)


# --- the README's example ---------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_the_readme_example_runs_against_a_live_server(live_server):
    migrated("thread_abc123", "conv_abc123")
    raw = new_token()
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"```python\n(# The lookup API.*?)```", readme, re.S).group(1)
    assert len(example.strip().splitlines()) <= 12
    printed = []
    namespace = {"print": lambda *args: printed.append(args)}
    environment = {"CONSOLE_URL": live_server.url, "CONSOLE_TOKEN": raw}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        exec(compile(example, "README.md", "exec"), namespace)
    assert printed == [("thread_abc123", "conv_abc123", [])]
    assert httpx2.get(f"{live_server.url}/api/v1/threads/thread_abc123").status_code == 401
    assert Conversation.objects.count() == 1
    assert timezone.now() - ApiToken.objects.get().last_used_at < timedelta(minutes=1)


def test_a_token_with_a_very_high_rate_is_admitted(client, clock):
    raw = new_token(requests_per_minute=10**9)  # its burst would overflow an integer
    assert get(client, "/api/v1/threads/thread_x", raw).status_code == 404

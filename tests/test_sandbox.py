"""The sandbox speaks the API's wire format, validates like the API, and injects every fault."""

import json
import warnings

import httpx2
import openai
import pytest
from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Message
from openai.types.conversations import Conversation, ConversationItemList
from openai.types.conversations import Message as ConversationMessage

from migrations_app.sandbox import (
    SandboxServer,
    SandboxState,
    foundry,
    generate_dataset,
    generate_foundry_dataset,
    seeded_state,
)
from migrations_app.sandbox import server as sandbox_server
from migrations_app.sandbox.validation import is_guide_assistant_message
from tests.benchmarks import common
from tests.engine import script
from tests.postgres import free_port
from tests.validity import ACCEPTED_ITEMS, GUIDE_FORM, REJECTED_ITEMS, USER_ITEM


@pytest.fixture
def http(sandbox):
    with httpx2.Client(
        base_url=sandbox.url,
        headers={"Authorization": "Bearer test", "OpenAI-Beta": "assistants=v2"},
    ) as client:
        yield client


@pytest.fixture
def api(client_for):
    return client_for()


def quiet(call, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return call(*args, **kwargs)


def a_thread_with(sandbox, minimum_messages):
    return next(t for t, m in sandbox.state.messages.items() if len(m) >= minimum_messages)


# --- data -----------------------------------------------------------------------------------------
def test_the_generator_is_deterministic():
    first = generate_dataset(seed=3, thread_count=20)
    second = generate_dataset(seed=3, thread_count=20)
    assert first[0] == second[0]
    assert json.dumps(list(first[1])) == json.dumps(list(second[1]))


def test_the_generator_covers_every_content_kind():
    _, bundles = generate_dataset(seed=1, thread_count=200)
    kinds, annotations, attachment_tools, call_kinds, outputs = set(), set(), set(), set(), set()
    longest, empty_messages = 0, 0
    for bundle in bundles:
        longest = max(longest, len(bundle["messages"]))
        for message in bundle["messages"]:
            empty_messages += not message["content"]
            for block in message["content"]:
                kinds.add((message["role"], block["type"]))
                if block["type"] == "text":
                    annotations |= {a["type"] for a in block["text"]["annotations"]}
            for attachment in message["attachments"]:
                attachment_tools |= {tool["type"] for tool in attachment["tools"]}
        for step in bundle["run_steps"]:
            for call in step["step_details"]["tool_calls"]:
                call_kinds.add(call["type"])
                if call["type"] == "function":
                    outputs.add(call["function"]["output"] is None)
    expected_kinds = {
        ("user", "text"), ("user", "image_url"), ("user", "image_file"),
        ("assistant", "text"), ("assistant", "refusal"), ("assistant", "image_file"),
    }  # fmt: skip
    assert expected_kinds <= kinds
    assert annotations == {"file_citation", "file_path"}
    assert attachment_tools == {"file_search", "code_interpreter"}
    assert call_kinds == {"function", "code_interpreter", "file_search"}
    assert outputs == {True, False}
    assert longest >= 200
    assert empty_messages > 0


def assert_parses_with_every_field(model, body, *, optional_too=True):
    """Parses as the SDK's model and carries every field the model declares (or, with
    optional_too=False, every field it requires). The SDK reads a missing field as None, so
    parsing alone would not notice one."""
    model.model_validate(body)
    expected = {n for n, f in model.model_fields.items() if optional_too or f.is_required()}
    assert expected <= set(body), expected - set(body)


def test_generated_source_objects_carry_every_field_of_the_sdk_models(demo_state):
    """As the API returned them: nullable fields present with null, not left out."""
    thread_id = a_thread_with_state(demo_state, 2)
    for message in demo_state.messages[thread_id]:
        assert_parses_with_every_field(Message, message)
    assert_parses_with_every_field(Thread, demo_state.threads[thread_id])
    for assistant in demo_state.assistants.values():
        assert_parses_with_every_field(Assistant, assistant)


def a_thread_with_state(state, minimum_messages):
    return next(t for t, m in state.messages.items() if len(m) >= minimum_messages)


# --- source endpoints -----------------------------------------------------------------------------
def test_messages_page_in_both_orders_with_after_and_before(sandbox, http):
    thread_id = a_thread_with(sandbox, 30)
    all_ids = [m["id"] for m in sandbox.state.messages[thread_id]]
    page = http.get(f"/threads/{thread_id}/messages", params={"order": "asc", "limit": 10}).json()
    assert [m["id"] for m in page["data"]] == all_ids[:10]
    assert page["has_more"] is True
    assert (page["first_id"], page["last_id"]) == (all_ids[0], all_ids[9])
    after = http.get(
        f"/threads/{thread_id}/messages", params={"order": "asc", "after": all_ids[9], "limit": 5}
    ).json()
    assert [m["id"] for m in after["data"]] == all_ids[10:15]
    before = http.get(
        f"/threads/{thread_id}/messages",
        params={"order": "asc", "before": all_ids[9], "limit": 3},
    ).json()
    assert [m["id"] for m in before["data"]] == all_ids[6:9]
    default = http.get(f"/threads/{thread_id}/messages").json()
    assert [m["id"] for m in default["data"]] == list(reversed(all_ids))[:20]


@pytest.mark.parametrize("limit", [0, 101, "x"])
def test_messages_reject_a_limit_outside_1_to_100(sandbox, http, limit):
    thread_id = a_thread_with(sandbox, 1)
    response = http.get(f"/threads/{thread_id}/messages", params={"limit": limit})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"


def test_the_sdk_reads_every_message_of_a_long_thread_through_the_sandbox(sandbox, api):
    thread_id = max(sandbox.state.messages, key=lambda t: len(sandbox.state.messages[t]))
    listed = quiet(lambda: list(api.beta.threads.messages.list(thread_id, order="asc", limit=100)))
    assert [m.id for m in listed] == [m["id"] for m in sandbox.state.messages[thread_id]]


def test_assistants_threads_runs_and_steps_are_served(sandbox, api):
    assistants = quiet(lambda: list(api.beta.assistants.list(limit=2)))
    assert len(assistants) == len(sandbox.state.assistants)
    assert quiet(api.beta.assistants.retrieve, assistants[0].id).id == assistants[0].id
    run_id, steps = next(iter(sandbox.state.steps.items()))
    thread_id = steps[0]["thread_id"]
    assert quiet(api.beta.threads.retrieve, thread_id).id == thread_id
    runs = quiet(lambda: list(api.beta.threads.runs.list(thread_id, limit=100)))
    assert run_id in {run.id for run in runs}
    listed = quiet(lambda: list(api.beta.threads.runs.steps.list(run_id, thread_id=thread_id)))
    assert [s.id for s in listed] == [s["id"] for s in steps]


def test_an_unknown_thread_is_a_404_with_the_error_envelope(http):
    response = http.get("/threads/thread_nope")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "No thread found with id 'thread_nope'.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert response.headers["x-request-id"].startswith("req_")


def test_assistants_endpoints_need_the_beta_header(sandbox):
    response = httpx2.get(f"{sandbox.url}/assistants", headers={"Authorization": "Bearer t"})
    assert response.status_code == 400
    assert "OpenAI-Beta" in response.json()["error"]["message"]


def test_requests_without_a_key_get_401(sandbox):
    response = httpx2.post(f"{sandbox.url}/conversations", json={})
    assert response.status_code == 401


# --- conversations --------------------------------------------------------------------------------
def test_a_conversation_is_created_listed_and_deleted(sandbox, api):
    conversation = api.conversations.create(metadata={"source_thread_id": "thread_x"})
    added = api.conversations.items.create(conversation.id, items=[USER_ITEM] * 3)
    assert all(item.id.startswith("msg_") for item in added.data)
    listed = list(api.conversations.items.list(conversation.id, order="asc", limit=2))
    assert [i.id for i in listed] == [i.id for i in added.data]
    assert api.conversations.retrieve(conversation.id).metadata == {"source_thread_id": "thread_x"}
    assert api.conversations.delete(conversation.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        api.conversations.retrieve(conversation.id)


def test_items_list_defaults_to_newest_first_and_pages_with_after(sandbox, api):
    conversation = api.conversations.create()
    texts = [f"m{i}" for i in range(5)]
    api.conversations.items.create(
        conversation.id,
        items=[{**USER_ITEM, "content": [{"type": "input_text", "text": t}]} for t in texts],
    )
    page = api.conversations.items.list(conversation.id, limit=2)
    assert [i.content[0].text for i in page.data] == ["m4", "m3"]
    assert page.has_more
    every = list(api.conversations.items.list(conversation.id, limit=2))
    assert [i.content[0].text for i in every] == list(reversed(texts))


def test_more_than_20_items_in_one_call_is_a_400_naming_items(api):
    conversation = api.conversations.create()
    with pytest.raises(openai.BadRequestError) as caught:
        api.conversations.items.create(conversation.id, items=[USER_ITEM] * 21)
    assert caught.value.param == "items"
    assert "maximum length 20" in caught.value.message
    with pytest.raises(openai.BadRequestError):
        api.conversations.create(items=[USER_ITEM] * 21)


def test_an_image_without_detail_is_rejected_naming_the_param(api):
    bad = {**USER_ITEM, "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}
    conversation = api.conversations.create()
    with pytest.raises(openai.BadRequestError) as caught:
        api.conversations.items.create(conversation.id, items=[USER_ITEM, bad])
    assert caught.value.param == "items[1].content[0].detail"


def test_unknown_keys_are_rejected(api):
    conversation = api.conversations.create()
    with pytest.raises(openai.BadRequestError) as caught:
        api.conversations.items.create(conversation.id, items=[{**USER_ITEM, "created_at": 1}])
    assert caught.value.param == "items[0].created_at"


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({f"k{i}": "v" for i in range(17)}, "metadata"),
        ({"k" * 65: "v"}, "metadata." + "k" * 65),
        ({"k": "v" * 513}, "metadata.k"),
        ({"k": 5}, "metadata.k"),
    ],
)
def test_metadata_beyond_the_documented_limits_is_rejected(api, metadata, param):
    with pytest.raises(openai.BadRequestError) as caught:
        api.conversations.create(metadata=metadata)
    assert caught.value.param == param


def test_a_failed_write_changes_nothing(sandbox, api):
    conversation = api.conversations.create()
    with pytest.raises(openai.BadRequestError):
        api.conversations.items.create(conversation.id, items=[USER_ITEM, {"type": "nonsense"}])
    assert sandbox.state.conversations[conversation.id]["items"] == []


def test_malformed_json_is_a_400(sandbox, http):
    response = http.post(
        "/conversations", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "parse the JSON body" in response.json()["error"]["message"]


def test_the_guide_assistant_form_is_accepted_as_the_one_documented_exception(api):
    conversation = api.conversations.create(items=[GUIDE_FORM, {**GUIDE_FORM, "type": "message"}])
    stored = list(api.conversations.items.list(conversation.id, order="asc"))
    assert [item.role for item in stored] == ["assistant", "assistant"]


@pytest.mark.parametrize(
    "variant",
    [
        {"role": "assistant", "content": [{"type": "output_text", "text": "x"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "x", "annotations": [{"type": "file_path"}]}
            ],
        },
        {"role": "user", "content": [{"type": "output_text", "text": "x", "annotations": []}]},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {**GUIDE_FORM, "id": "msg_1"},
    ],
)
def test_the_exception_is_exactly_that_shape_and_nothing_wider(api, variant):
    assert not is_guide_assistant_message(variant)
    with pytest.raises(openai.BadRequestError):
        api.conversations.create(items=[variant])


# --- the sandbox agrees with the API's contract (the published spec: test_spec.py) ---------------
@pytest.mark.parametrize("item", ACCEPTED_ITEMS)
def test_what_the_api_accepts_the_sandbox_accepts(api, item):
    api.conversations.create(items=[item])


@pytest.mark.parametrize("item", REJECTED_ITEMS)
def test_what_the_api_rejects_the_sandbox_rejects(api, item):
    with pytest.raises(openai.BadRequestError):
        api.conversations.create(items=[item])


def test_sandbox_responses_parse_as_the_sdk_models_with_every_required_field(api):
    conversation = api.conversations.create(items=[USER_ITEM])
    body = api.conversations.with_raw_response.retrieve(conversation.id).http_response.json()
    assert_parses_with_every_field(Conversation, body, optional_too=False)
    listed = api.conversations.items.with_raw_response.list(conversation.id).http_response.json()
    assert_parses_with_every_field(ConversationItemList, listed, optional_too=False)
    assert_parses_with_every_field(ConversationMessage, listed["data"][0], optional_too=False)


# --- faults ---------------------------------------------------------------------------------------
def test_rate_limit_fault_answers_429_with_rate_limit_headers(sandbox, http):
    sandbox.state.configure_faults(rate_limit=1.0, retry_after_seconds=7)
    response = http.post("/conversations", json={})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["retry-after-ms"] == "7000"
    assert "x-ratelimit-remaining-requests" in response.headers
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert sandbox.state.conversations == {}


def test_server_error_fault_answers_500_and_writes_nothing(sandbox, api):
    script(sandbox, {"kind": "server_error", "path_contains": "/conversations"})
    with pytest.raises(openai.InternalServerError):
        api.conversations.create()
    assert sandbox.state.conversations == {}
    api.conversations.create()
    assert len(sandbox.state.conversations) == 1


def test_drop_before_write_closes_the_connection_and_writes_nothing(sandbox, api):
    script(sandbox, {"kind": "drop_before_write", "path_contains": "/conversations"})
    with pytest.raises(openai.APIConnectionError):
        api.conversations.create(items=[USER_ITEM])
    assert sandbox.state.conversations == {}
    assert sandbox.state.fault_counts["drop_before_write"] == 1


def test_drop_after_write_applies_the_write_then_closes_the_connection(sandbox, api):
    conversation = api.conversations.create()
    script(sandbox, {"kind": "drop_after_write", "path_contains": "/items"})
    with pytest.raises(openai.APIConnectionError):
        api.conversations.items.create(conversation.id, items=[USER_ITEM, USER_ITEM])
    assert len(sandbox.state.conversations[conversation.id]["items"]) == 2


def test_drop_after_write_on_create_leaves_a_conversation_the_client_never_heard_of(sandbox, api):
    script(sandbox, {"kind": "drop_after_write", "path_contains": "/conversations"})
    with pytest.raises(openai.APIConnectionError):
        api.conversations.create(metadata={"a": "b"})
    assert len(sandbox.state.conversations) == 1


def test_a_read_can_be_dropped_too(sandbox, api):
    script(sandbox, {"kind": "drop", "method": "GET", "path_contains": "/threads/"})
    with pytest.raises(openai.APIConnectionError):
        quiet(api.beta.threads.retrieve, a_thread_with(sandbox, 1))


def test_random_faults_follow_their_probabilities_deterministically(sandbox, http):
    sandbox.state.configure_faults(server_error=0.5, seed=11)
    first = [http.post("/conversations", json={}).status_code for _ in range(40)]
    sandbox.state.configure_faults(server_error=0.5, seed=11)
    second = [http.post("/conversations", json={}).status_code for _ in range(40)]
    assert first == second
    assert 8 < first.count(500) < 32


def test_latency_is_applied_to_every_api_request(sandbox, http, monkeypatch):
    slept = []
    monkeypatch.setattr(sandbox_server.time, "sleep", slept.append)
    sandbox.state.configure_faults(latency_ms=120)
    http.get(f"/threads/{a_thread_with(sandbox, 1)}")
    http.post("/conversations", json={})
    assert slept == [0.12, 0.12]


def test_the_rpm_cap_answers_429_once_the_minute_is_used_up(sandbox, http):
    sandbox.state.configure_faults(rpm_cap=3)
    statuses = [http.post("/conversations", json={}).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    assert len(sandbox.state.conversations) == 3


def test_faults_are_configured_and_inspected_over_http(sandbox):
    base = sandbox.url.removesuffix("/v1")
    assert httpx2.post(f"{base}/_sandbox/faults", json={"server_error": 0.25}).status_code == 200
    assert sandbox.state.faults.server_error == 0.25
    assert httpx2.post(f"{base}/_sandbox/faults", json={"nonsense": 1}).status_code == 400
    state = httpx2.get(f"{base}/_sandbox/state").json()
    assert state["faults"]["server_error"] == 0.25
    assert state["threads"] == len(sandbox.state.threads)


def test_introspection_is_never_faulted(sandbox):
    sandbox.state.configure_faults(server_error=1.0, rate_limit=0)
    base = sandbox.url.removesuffix("/v1")
    assert httpx2.get(f"{base}/_sandbox/health").status_code == 200


def test_two_servers_keep_separate_state():
    with SandboxServer(state=SandboxState()) as one, SandboxServer(state=seeded_state(1, 3)) as two:
        assert one.port != two.port
        assert not one.state.threads and len(two.state.threads) == 3


def test_run_sandbox_serves_its_seeded_threads_with_the_faults_it_was_given_and_stops():
    port = free_port()
    process = common.sandbox(port, threads=3, latency_ms=5, rpm_cap=1200)
    try:
        state = common.sandbox_state(port)
        assert (state["threads"], state["faults"]["rpm_cap"], state["faults"]["latency_ms"]) == (
            3, 1200, 5,
        )  # fmt: skip
        thread_id = next(iter(seeded_state(seed=1, thread_count=3).threads))
        answer = httpx2.get(
            f"http://127.0.0.1:{port}/v1/threads/{thread_id}",
            headers={"Authorization": "Bearer test", "OpenAI-Beta": "assistants=v2"},
        )
        assert answer.status_code == 200 and Thread.model_validate(answer.json()).id == thread_id
    finally:
        common.stop_group(process)
    assert process.returncode == 0


# --- Azure mode and Foundry's shapes -------------------------------------------------------------
def foundry_contents(seed=7, thread_count=30):
    assistants, bundles = generate_foundry_dataset(seed=seed, thread_count=thread_count)
    bundles = list(bundles)
    tools = {tool["type"] for assistant in assistants for tool in assistant["tools"]}
    calls = {
        call["type"]
        for bundle in bundles
        for step in bundle["run_steps"]
        for call in step["step_details"]["tool_calls"]
    }
    annotations = {
        annotation["type"]
        for bundle in bundles
        for message in bundle["messages"]
        for block in message["content"]
        if block["type"] == "text"
        for annotation in block["text"]["annotations"]
    }
    sources = [
        attachment["data_source"]
        for bundle in bundles
        for message in bundle["messages"]
        for attachment in message["attachments"]
        if "data_source" in attachment
    ]
    return tools, calls, annotations, sources


def test_the_foundry_data_holds_every_foundry_tool_call_and_annotation():
    tools, calls, annotations, sources = foundry_contents()
    assert set(foundry.TOOL_TYPES) <= tools
    assert set(foundry.TOOL_TYPES) <= calls
    assert {"url_citation", "file_citation", "file_path"} <= annotations
    assert sources and all(source["type"] == "uri_asset" for source in sources)


def test_the_foundry_data_is_the_demo_data_plus_foundrys_shapes():
    """Same seed, same threads and messages: the OpenAI-shaped data is unchanged."""
    plain_assistants, plain = generate_dataset(seed=3, thread_count=10)
    azure_assistants, azure = generate_foundry_dataset(seed=3, thread_count=10)
    assert [a["id"] for a in plain_assistants] == [a["id"] for a in azure_assistants]
    for ours, theirs in zip(plain, azure, strict=True):
        assert [m["id"] for m in ours["messages"]] == [m["id"] for m in theirs["messages"]]
        assert {s["id"] for s in ours["run_steps"]} <= {s["id"] for s in theirs["run_steps"]}
    again = generate_foundry_dataset(seed=3, thread_count=10)
    assert json.dumps(list(again[1])) == json.dumps(list(generate_foundry_dataset(3, 10)[1]))


@pytest.fixture
def azure_mode():
    with SandboxServer(state=seeded_state(seed=7, thread_count=5, foundry=True), azure=True) as s:
        yield s


def test_azure_mode_serves_foundry_agents_to_a_request_with_api_version_and_a_key(azure_mode):
    answer = httpx2.get(
        f"{azure_mode.url}/assistants",
        params={"api-version": "v1", "limit": 100},
        headers={"api-key": "k"},
    )
    assert answer.status_code == 200
    kinds = {tool["type"] for agent in answer.json()["data"] for tool in agent["tools"]}
    assert set(foundry.TOOL_TYPES) <= kinds


def test_azure_mode_refuses_every_api_request_without_api_version_and_records_it(azure_mode):
    answer = httpx2.post(
        f"{azure_mode.url}/conversations", json={}, headers={"Authorization": "Bearer t"}
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "Missing required query parameter: api-version"
    assert azure_mode.state.missing_api_version == ["POST /v1/conversations"]
    assert not azure_mode.state.conversations, "nothing was written"


def test_outside_azure_mode_the_api_version_is_not_required(sandbox, http):
    assert http.get(f"/threads/{next(iter(sandbox.state.threads))}").status_code == 200
    assert sandbox.state.missing_api_version == []


# --- live threads ---------------------------------------------------------------------------------
def test_a_turn_adds_a_user_message_its_run_a_tool_call_step_and_the_reply(sandbox):
    state = sandbox.state
    thread_id = a_thread_with(sandbox, 2)
    before = state.messages[thread_id][-1]["created_at"]
    turn = state.add_turn(thread_id)
    user, reply = state.messages[thread_id][-2:]
    run = state.runs[thread_id][-1]
    (step,) = state.steps[run["id"]]
    assert turn == {"messages": [user, reply], "runs": [run], "run_steps": [step]}
    assert (user["role"], reply["role"]) == ("user", "assistant")
    assert before <= user["created_at"] < reply["created_at"]
    assert reply["run_id"] == step["run_id"] == run["id"] and run["tools"]
    (call,) = step["step_details"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["output"] is not None
    assert state.turns_added == {thread_id: 1}
    Message.model_validate(user)
    Message.model_validate(reply)


@pytest.mark.parametrize("tool", [None, "bing_grounding", "mcp", "a_tool_from_the_future"])
def test_a_turn_carries_the_tool_call_asked_for(sandbox, tool):
    turn = sandbox.state.add_turn(a_thread_with(sandbox, 1), tool)
    calls = [c["type"] for s in turn["run_steps"] for c in s["step_details"]["tool_calls"]]
    assert calls == ([] if tool is None else [tool])


def test_turns_are_added_over_http_while_the_sandbox_runs(sandbox, http):
    thread_id = a_thread_with(sandbox, 1)
    base = sandbox.url.removesuffix("/v1")
    answer = httpx2.post(
        f"{base}/_sandbox/threads/{thread_id}/turns", json={"count": 2, "tool": "azure_function"}
    )
    assert answer.status_code == 200 and len(answer.json()["added"]) == 2
    listed = http.get(f"/threads/{thread_id}/messages", params={"order": "desc", "limit": 4})
    added = [m["id"] for turn in answer.json()["added"] for m in turn["messages"]]
    assert [m["id"] for m in listed.json()["data"]] == added[::-1]
    assert httpx2.get(f"{base}/_sandbox/state?items=0").json()["turns_added"] == {thread_id: 2}
    assert httpx2.post(f"{base}/_sandbox/threads/thread_nope/turns", json={}).status_code == 404
    bad = httpx2.post(f"{base}/_sandbox/threads/{thread_id}/turns", json={"count": 0})
    assert bad.status_code == 400


def step_calls(state):
    return {
        step["id"]: [call["type"] for call in step["step_details"]["tool_calls"]]
        for steps in state.steps.values()
        for step in steps
    }


def test_the_trickle_adds_one_turn_per_tick_taking_the_tools_in_turn(sandbox):
    before = step_calls(sandbox.state)
    ticks = iter([False, False, False, True])
    sandbox.state.start_trickle(5, ["function", "bing_grounding"], wait=lambda _: next(ticks))
    sandbox.state.stop_trickle()  # joins the trickle once its ticks ran out
    assert sum(sandbox.state.turns_added.values()) == 3
    added = [calls for step, calls in step_calls(sandbox.state).items() if step not in before]
    assert sorted(added) == [["bing_grounding"], ["function"], ["function"]]


def test_run_sandbox_azure_requires_api_version_and_adds_turns_on_request():
    port = free_port()
    process = common.sandbox(port, threads=3, latency_ms=0, extra=["--azure"])
    try:
        base = f"http://127.0.0.1:{port}"
        thread_id = next(iter(seeded_state(seed=1, thread_count=3, foundry=True).threads))
        without = httpx2.get(f"{base}/v1/threads/{thread_id}", headers={"api-key": "k"})
        assert without.status_code == 400
        answer = httpx2.get(
            f"{base}/v1/threads/{thread_id}", params={"api-version": "v1"}, headers={"api-key": "k"}
        )
        assert answer.status_code == 200
        assert httpx2.post(f"{base}/_sandbox/threads/{thread_id}/turns", json={}).status_code == 200
        state = httpx2.get(f"{base}/_sandbox/state?items=0").json()
        assert state["azure"] is True
        assert state["missing_api_version"] == [f"GET /v1/threads/{thread_id}"]
        assert state["turns_added"] == {thread_id: 1}
    finally:
        common.stop_group(process)
    assert process.returncode == 0

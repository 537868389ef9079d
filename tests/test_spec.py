"""The optional layer: what we send and what the sandbox answers, held to OpenAI's published
OpenAPI description as well.

The rest of the suite validates with the SDK's typed params, which are installed with the project.
This module adds the cross-check against the spec, which lives outside the project: it runs when
OPENAI_SPEC names a copy of openapi.yaml (`make test` sets it when
../shared/openai-spec/openapi.yaml exists) and is otherwise reported as one skipped module with
the reason. OPENAI_SPEC naming a file that does not exist is an error, not a skip.
"""

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from openai import OpenAI

from tests import spec

SPEC_FILE = spec.configured_path()
if SPEC_FILE is None:
    pytest.skip(
        "optional spec layer: OPENAI_SPEC names no copy of OpenAI's openapi.yaml (`make test` "
        "passes ../shared/openai-spec/openapi.yaml when it exists)",
        allow_module_level=True,
    )
if not SPEC_FILE.is_file():
    raise FileNotFoundError(f"OPENAI_SPEC names {SPEC_FILE}, which does not exist")

from migrations_app.conversion import convert_thread, responses_config  # noqa: E402
from migrations_app.sandbox import (  # noqa: E402
    SandboxState,
    generate_dataset,
    generate_foundry_dataset,
)
from migrations_app.sandbox.validation import is_guide_assistant_message  # noqa: E402
from tests.test_conversion import ASSISTANT, THREAD_WITH_RESOURCES  # noqa: E402
from tests.test_properties import threads  # noqa: E402
from tests.validity import (  # noqa: E402
    ACCEPTED_ITEMS,
    GUIDE_FORM,
    REJECTED_ITEMS,
    USER_ITEM,
    spec_valid_twin,
)


def spec_errors(item: dict) -> list[str]:
    """The spec's complaints about an item we send; an assistant message must be the guide's form
    and is checked as its spec-valid twin (the one documented exception)."""
    if item.get("type", "message") == "message" and item.get("role") == "assistant":
        assert is_guide_assistant_message(item), item
        return spec.errors(spec_valid_twin(item), "InputItem")
    return spec.errors(item, "InputItem")


# --- the items the conversion sends ---------------------------------------------------------------
def test_every_item_of_the_demo_data_set_is_valid_against_the_spec() -> None:
    _, bundles = generate_dataset(seed=1, thread_count=60)
    for bundle in bundles:
        conversion = convert_thread(bundle["thread"], bundle["messages"], bundle["run_steps"])
        for item in conversion.items:
            assert not spec_errors(item), item


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(threads())
def test_every_generated_item_is_valid_against_the_spec(thread: tuple) -> None:
    for item in convert_thread(*thread).items:
        assert not spec_errors(item), item


def test_the_spec_rejects_the_guide_form_which_is_why_it_is_an_exception() -> None:
    assert spec.items_body_errors({"items": [GUIDE_FORM]})
    assert not spec.errors(spec_valid_twin(GUIDE_FORM), "InputItem")


@pytest.mark.parametrize("item", ACCEPTED_ITEMS)
def test_the_spec_accepts_what_the_sandbox_accepts(item: dict) -> None:
    assert not spec.items_body_errors({"items": [item]})


@pytest.mark.parametrize("item", REJECTED_ITEMS)
def test_the_spec_rejects_what_the_sandbox_rejects(item: dict) -> None:
    assert spec.items_body_errors({"items": [item]})


def test_the_spec_caps_a_call_at_20_items_as_the_sandbox_does() -> None:
    assert spec.items_body_errors({"items": [USER_ITEM] * 21})
    assert not spec.items_body_errors({"items": [USER_ITEM] * 20})


# --- the Responses configurations -----------------------------------------------------------------
@pytest.mark.parametrize(
    "assistant",
    [
        ASSISTANT,
        {**ASSISTANT, "response_format": "auto"},
        {**ASSISTANT, "response_format": {"type": "json_object"}},
        {**ASSISTANT, "tool_resources": None, "tools": [{"type": "code_interpreter"}]},
    ],
)
def test_responses_configurations_are_valid_against_the_spec(assistant: dict) -> None:
    config, _ = responses_config(assistant, THREAD_WITH_RESOURCES)
    assert not spec.errors({**config, "input": "hi"}, "CreateResponse"), config


@pytest.mark.parametrize("generate", [generate_dataset, generate_foundry_dataset])
def test_every_demo_assistant_configuration_is_valid_against_the_spec(generate) -> None:
    """Azure Foundry's agents too: their MCP tool becomes Responses' mcp tool."""
    assistants, bundles = generate(seed=1, thread_count=5)
    for assistant, bundle in zip(assistants, bundles, strict=False):
        config, _ = responses_config(assistant, bundle["thread"])
        assert not spec.errors({**config, "input": "hi"}, "CreateResponse"), config


def test_every_item_of_the_foundry_data_set_is_valid_against_the_spec() -> None:
    _, bundles = generate_foundry_dataset(seed=1, thread_count=30)
    for bundle in bundles:
        conversion = convert_thread(bundle["thread"], bundle["messages"], bundle["run_steps"])
        for item in conversion.items:
            assert not spec_errors(item), item


# --- the sandbox ----------------------------------------------------------------------------------
def test_generated_source_objects_carry_every_key_the_spec_requires(
    demo_state: SandboxState,
) -> None:
    thread_id = next(t for t, m in demo_state.messages.items() if len(m) >= 2)
    for message in demo_state.messages[thread_id]:
        assert not spec.errors(message, "MessageObject")
    assert not spec.errors(demo_state.threads[thread_id], "ThreadObject")
    for assistant in demo_state.assistants.values():
        assert not spec.errors(assistant, "AssistantObject")


def test_sandbox_responses_match_the_spec_schemas(client_for: Callable[[], OpenAI]) -> None:
    api = client_for()
    conversation = api.conversations.create(items=[USER_ITEM])
    body = api.conversations.with_raw_response.retrieve(conversation.id).http_response.json()
    assert not spec.errors(body, "ConversationResource")
    listed = api.conversations.items.with_raw_response.list(conversation.id).http_response.json()
    assert not spec.errors(listed, "ConversationItemList")

"""Azure Foundry's shapes convert or warn, never crash and are never refused: one rule for every
tool type (conversion.TOOL_RULES, UNKNOWN_TOOL for the rest), each named type tested in an
agent's tools, in a run step and through intake's checks. Pure functions: no database."""

import random

import pytest

from migrations_app.conversion import TOOL_RULES, convert_thread, responses_config
from migrations_app.intake.validation import check_assistant, check_bundle
from migrations_app.sandbox import foundry, generate_foundry_dataset
from tests.test_conversion import convert, msg, step, text
from tests.validity import assert_valid_items, assert_valid_response_config

NAMED = (
    "bing_grounding",
    "azure_ai_search",
    "openapi",
    "azure_function",
    "sharepoint_grounding",
    "fabric_dataagent",
    "mcp",
    "connected_agent",
    "deep_research",
    "browser_automation",
)
NOT_KNOWN_YET = "holographic_search"
AGENT = {"id": "asst_foundry", "model": "gpt-4o", "tools": [], "tool_resources": None}


def agent_with(kind, resources=None):
    tool = (
        foundry.tool_definition(kind)
        if kind in foundry.TOOL_TYPES
        else {"type": kind, kind: {"x": 1}}
    )
    return {**AGENT, "tools": [tool], "tool_resources": resources}


def call_of(kind):
    if kind in foundry.TOOL_TYPES:
        return foundry.tool_call(kind, "call_1", random.Random(0))
    return {"id": "call_1", "type": kind, kind: {"anything": ["at", "all"]}}


def bundle_with(*messages, steps=(), thread=None):
    return {
        "thread": thread or {"id": "thread_foundry", "created_at": 1, "metadata": {}},
        "messages": list(messages),
        "runs": [],
        "run_steps": list(steps),
    }


def test_every_named_type_has_its_own_rule():
    assert set(NAMED) <= set(TOOL_RULES)
    assert NOT_KNOWN_YET not in TOOL_RULES


# --- an agent's tools ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [*(k for k in NAMED if k != "mcp"), "bing_custom_search"])
def test_a_foundry_tool_is_left_out_of_the_configuration_with_what_to_do_instead(kind):
    config, warnings = responses_config(agent_with(kind))
    assert_valid_response_config(config)
    assert "tools" not in config
    (warning,) = [w.text for w in warnings]
    assert warning.startswith(f"{kind} tool") and f"left out: {TOOL_RULES[kind].instead}" in warning


def test_an_mcp_tool_becomes_the_responses_mcp_tool_with_its_approval_setting():
    resources = foundry.tool_resources()
    config, warnings = responses_config(agent_with("mcp", resources))
    assert_valid_response_config(config)
    assert config["tools"] == [
        {
            "type": "mcp",
            "server_label": foundry.MCP_LABEL,
            "server_url": "https://mcp.contoso.example/docs",
            "allowed_tools": ["search_docs"],
            "require_approval": "never",
        }
    ]
    assert warnings == []


def test_an_mcp_servers_headers_are_not_copied_and_say_so():
    resources = {"mcp": [{"server_label": foundry.MCP_LABEL, "headers": {"X-Token": "s3cret"}}]}
    config, warnings = responses_config(agent_with("mcp", resources))
    assert "headers" not in config["tools"][0]
    assert any("its headers are not copied" in w.text for w in warnings)


def test_a_tool_of_a_type_not_known_yet_is_left_out_with_a_warning():
    config, warnings = responses_config(agent_with(NOT_KNOWN_YET))
    assert_valid_response_config(config)
    assert [w.text for w in warnings] == [
        f"{NOT_KNOWN_YET} tool left out: a tool type the console does not know"
    ]


def test_a_left_out_tool_is_named_by_its_function_or_agent():
    _, warnings = responses_config(agent_with("azure_function"))
    assert warnings[0].text.startswith("azure_function tool check_inventory left out")
    _, warnings = responses_config(agent_with("connected_agent"))
    assert warnings[0].text.startswith("connected_agent tool billing_agent left out")


def test_every_foundry_demo_agent_configuration_is_a_valid_responses_request():
    assistants, bundles = generate_foundry_dataset(seed=7, thread_count=4)
    for assistant, bundle in zip(assistants, bundles, strict=True):
        config, warnings = responses_config(assistant, bundle["thread"])
        assert_valid_response_config(config)
        assert warnings


# --- run steps ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [*NAMED, "bing_custom_search", NOT_KNOWN_YET])
def test_a_foundry_call_in_a_run_step_is_not_sent_and_says_why(kind):
    answer = msg("assistant", text("Done."), run_id="run_1")
    conversion = convert(answer, steps=[step("run_1", call_of(kind))])
    assert [item["type"] for item in conversion.items] == ["message"]
    (warning,) = conversion.warnings
    assert warning.text.startswith(f"{kind} call call_1 not sent: ")
    assert warning.source.startswith("step_")


def test_foundry_calls_beside_a_function_call_leave_the_function_call_to_travel():
    answer = msg("assistant", text("Done."), run_id="run_1")
    function = {
        "id": "call_f",
        "type": "function",
        "function": {"name": "lookup", "arguments": "{}", "output": "ok"},
    }
    conversion = convert(answer, steps=[step("run_1", call_of("mcp"), function)])
    assert [item["type"] for item in conversion.items] == [
        "function_call",
        "function_call_output",
        "message",
    ]


# --- messages -----------------------------------------------------------------------------------
def test_a_url_citation_is_kept_in_the_console_and_named_with_its_url():
    block = foundry.url_citation("See the page.", "https://www.contoso.example/a", "A")
    conversion = convert(msg("assistant", block, message_id="msg_cited"))
    assert conversion.items[0]["content"][0]["text"] == block["text"]["value"], "text unchanged"
    assert [str(w) for w in conversion.warnings] == [
        "msg_cited: 1 annotation(s) (url_citation https://www.contoso.example/a) kept in the "
        "console only: conversation items carry no annotations; the text and its placeholders "
        "are unchanged"
    ]


def test_an_attachment_from_an_azure_data_source_is_not_sent_and_says_so():
    attachment = {"data_source": {"uri": "azureml://x/faq.pdf", "type": "uri_asset"}, "tools": []}
    conversion = convert(msg("user", text("see"), attachments=[attachment]))
    assert conversion.items[0]["content"] == [{"type": "input_text", "text": "see"}]
    assert "attachment from the data source azureml://x/faq.pdf not sent" in str(
        conversion.warnings[0]
    )


def test_every_foundry_demo_thread_converts_into_valid_items():
    _, bundles = generate_foundry_dataset(seed=7, thread_count=30)
    for bundle in bundles:
        conversion = convert_thread(bundle["thread"], bundle["messages"], bundle["run_steps"])
        assert_valid_items(conversion.items)


# --- intake's checks ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [*NAMED, "bing_custom_search", NOT_KNOWN_YET])
def test_intake_accepts_an_agent_and_a_run_step_of_every_tool_type(kind):
    assert check_assistant(agent_with(kind, foundry.tool_resources())) is None
    answer = {**msg("assistant", text("x"), run_id="run_1"), "created_at": 5}
    calls = {**step("run_1", call_of(kind)), "created_at": 5}
    assert check_bundle(bundle_with(answer, steps=[calls])) is None


def test_intake_accepts_foundrys_resources_and_data_source_attachments():
    thread = {
        "id": "thread_foundry",
        "created_at": 1,
        "metadata": {},
        "tool_resources": foundry.tool_resources(),
    }
    attachment = {"data_source": {"uri": "azureml://x/faq.pdf", "type": "uri_asset"}, "tools": []}
    asked = {**msg("user", text("see"), attachments=[attachment]), "created_at": 1}
    cited = {
        **msg("assistant", foundry.url_citation("See.", "https://contoso.example", "C")),
        "created_at": 2,
    }
    assert check_bundle(bundle_with(asked, cited, thread=thread)) is None


def test_intake_still_refuses_an_attachment_with_neither_a_file_nor_a_data_source():
    broken = {**msg("user", text("see"), attachments=[{"data_source": "faq.pdf"}]), "created_at": 1}
    assert "data_source is not an object with a uri" in check_bundle(bundle_with(broken))
    empty = {**msg("user", text("see"), attachments=[{"tools": []}]), "created_at": 1}
    assert "file_id is null" in check_bundle(bundle_with(empty))


def test_intake_accepts_every_foundry_demo_bundle_and_agent():
    assistants, bundles = generate_foundry_dataset(seed=7, thread_count=30)
    assert all(check_assistant(a) is None for a in assistants)
    assert all(check_bundle(b) is None for b in bundles)

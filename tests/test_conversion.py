"""The conversion rules of DESIGN.md, case by case. Pure functions: no database."""

import itertools

import pytest

from migrations_app.conversion import (
    DEFAULT_OPTIONS,
    ConversionWarning,
    Options,
    batches,
    conversation_metadata,
    convert_thread,
    responses_config,
)
from migrations_app.sandbox import generate_dataset
from tests.validity import assert_valid_items, assert_valid_response_config

_ids = itertools.count(1)
THREAD = {"id": "thread_t", "metadata": {}}


def text(value, *annotations):
    return {"type": "text", "text": {"value": value, "annotations": list(annotations)}}


def msg(role, *content, created_at=0, attachments=None, run_id=None, message_id=None):
    return {
        "id": message_id or f"msg_{next(_ids)}",
        "role": role,
        "created_at": created_at,
        "content": list(content),
        "attachments": attachments or [],
        "run_id": run_id,
    }


def function_call(call_id, output="{}", name="lookup"):
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": '{"q": 1}', "output": output},
    }


def step(run_id, *calls, created_at=0):
    return {
        "id": f"step_{next(_ids)}",
        "run_id": run_id,
        "created_at": created_at,
        "type": "tool_calls",
        "step_details": {"type": "tool_calls", "tool_calls": list(calls)},
    }


def convert(*messages, steps=(), options=DEFAULT_OPTIONS, thread=THREAD):
    conversion = convert_thread(thread, list(messages), list(steps), options)
    assert_valid_items(conversion.items)
    return conversion


def warning_texts(conversion):
    return [str(w) for w in conversion.warnings]


# --- text -----------------------------------------------------------------------------------------
def test_user_text_becomes_an_input_text_part():
    conversion = convert(msg("user", text("Hello")))
    assert conversion.items == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello"}]}
    ]
    assert conversion.warnings == []


def test_assistant_text_becomes_one_output_text_part_per_block():
    conversion = convert(msg("assistant", text("One"), text("Two")))
    assert conversion.items == [
        {
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "One", "annotations": []},
                {"type": "output_text", "text": "Two", "annotations": []},
            ],
        }
    ]


def test_several_user_text_blocks_stay_separate_parts():
    conversion = convert(msg("user", text("a"), text("b")))
    assert [p["text"] for p in conversion.items[0]["content"]] == ["a", "b"]


def test_annotated_text_is_unchanged_byte_for_byte_and_annotations_are_named():
    value = "See 【4:0†source】 and sandbox:/mnt/data/x.csv"
    citation = {
        "type": "file_citation",
        "text": "【4:0†source】",
        "start_index": 4,
        "end_index": 15,
        "file_citation": {"file_id": "file-cite"},
    }
    path = {
        "type": "file_path",
        "text": "sandbox:/mnt/data/x.csv",
        "start_index": 20,
        "end_index": 43,
        "file_path": {"file_id": "file-path"},
    }
    message = msg("assistant", text(value, citation, path))
    conversion = convert(message)
    sent = conversion.items[0]["content"][0]["text"]
    assert sent.encode() == value.encode()
    assert warning_texts(conversion) == [
        f"{message['id']}: 2 annotation(s) (file_citation file-cite, file_path file-path) kept "
        "in the console only: conversation items carry no annotations; the text and its "
        "placeholders are unchanged"
    ]


@pytest.mark.parametrize(
    "value",
    [
        "emoji 👨‍👩‍👧‍👦 🎉 and skin tone 👍🏽",
        "مرحبا بالعالم — RTL with \u200f marks",
        "combining e\u0301 vs é, zero\u200bwidth, nbsp\u00a0",
        "<script>alert('x')</script><img src=x onerror=alert(1)> {{ x }} {% debug %}",
        "line\r\nbreaks\tand tabs",
        "x" * 30_000,
    ],
)
def test_hostile_long_and_unicode_text_is_carried_exactly(value):
    conversion = convert(msg("user", text(value)), msg("assistant", text(value)))
    assert [item["content"][0]["text"] for item in conversion.items] == [value, value]


# --- images ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("detail", "sent"), [(None, "auto"), ("low", "low"), ("high", "high")])
def test_user_image_url_keeps_url_and_detail_defaulting_to_auto(detail, sent):
    image = {"url": "https://example.com/a.png", **({"detail": detail} if detail else {})}
    conversion = convert(msg("user", {"type": "image_url", "image_url": image}))
    assert conversion.items[0]["content"] == [
        {"type": "input_image", "image_url": "https://example.com/a.png", "detail": sent}
    ]


@pytest.mark.parametrize(("detail", "sent"), [(None, "auto"), ("high", "high")])
def test_user_image_file_keeps_file_id_and_detail(detail, sent):
    image = {"file_id": "file-img", "detail": detail}
    conversion = convert(msg("user", {"type": "image_file", "image_file": image}))
    assert conversion.items[0]["content"] == [
        {"type": "input_image", "file_id": "file-img", "detail": sent}
    ]


def test_an_explicit_null_detail_is_sent_as_auto():
    image = {"url": "https://example.com/a.png", "detail": None}
    conversion = convert(msg("user", {"type": "image_url", "image_url": image}))
    assert conversion.items[0]["content"][0]["detail"] == "auto"


@pytest.mark.parametrize(
    ("block", "target"),
    [
        ({"type": "image_file", "image_file": {"file_id": "file-chart"}}, "file-chart"),
        ({"type": "image_url", "image_url": {"url": "https://x/c.png"}}, "https://x/c.png"),
    ],
)
def test_assistant_images_become_text_markers_with_a_warning(block, target):
    message = msg("assistant", text("Here:"), block)
    conversion = convert(message)
    assert conversion.items[0]["content"][1] == {
        "type": "output_text",
        "text": f"[image: {target}]",
        "annotations": [],
    }
    assert warning_texts(conversion) == [
        f"{message['id']}: assistant {block['type']} {target} shown as a text marker: "
        "assistant items cannot carry images"
    ]


# --- refusals, attachments ------------------------------------------------------------------------
def test_a_refusal_is_sent_as_assistant_text_with_a_warning():
    message = msg("assistant", {"type": "refusal", "refusal": "I can't help with that."})
    conversion = convert(message)
    assert conversion.items[0]["content"] == [
        {"type": "output_text", "text": "I can't help with that.", "annotations": []}
    ]
    assert "refusal sent as assistant text" in warning_texts(conversion)[0]


@pytest.mark.parametrize(
    ("tools", "warned"),
    [
        ([{"type": "code_interpreter"}], False),
        ([{"type": "file_search"}], True),
        ([{"type": "code_interpreter"}, {"type": "file_search"}], True),
        ([], False),
    ],
)
def test_user_attachments_become_input_file_parts_after_the_content(tools, warned):
    attachments = [{"file_id": "file-att", "tools": tools}]
    conversion = convert(msg("user", text("see file"), attachments=attachments))
    assert conversion.items[0]["content"] == [
        {"type": "input_text", "text": "see file"},
        {"type": "input_file", "file_id": "file-att"},
    ]
    assert any("bound to file_search" in w for w in warning_texts(conversion)) is warned


def test_attachments_can_be_switched_off_with_a_warning_each():
    attachments = [{"file_id": "file-a", "tools": []}, {"file_id": "file-b", "tools": []}]
    conversion = convert(
        msg("user", text("x"), attachments=attachments), options=Options(attachments=False)
    )
    assert conversion.items[0]["content"] == [{"type": "input_text", "text": "x"}]
    assert len(conversion.warnings) == 2
    assert "attachment file-a not sent (attachments are off)" in warning_texts(conversion)[0]


def test_an_assistant_attachment_becomes_a_text_marker():
    attachments = [{"file_id": "file-out", "tools": [{"type": "code_interpreter"}]}]
    conversion = convert(msg("assistant", text("done"), attachments=attachments))
    assert conversion.items[0]["content"][-1]["text"] == "[attached file: file-out]"
    assert "assistant items carry only text" in warning_texts(conversion)[0]


# --- empty and unknown ----------------------------------------------------------------------------
def test_a_message_with_no_content_is_skipped_and_counted():
    empty = msg("user")
    conversion = convert(msg("user", text("a")), empty)
    assert len(conversion.items) == 1
    assert conversion.skipped_messages == 1
    assert warning_texts(conversion) == [f"{empty['id']}: message with no content skipped"]


def test_a_thread_with_no_messages_converts_to_no_items_and_one_create():
    conversion = convert()
    assert conversion.items == []
    assert (conversion.write_calls, conversion.verify_calls) == (1, 1)


def test_an_unknown_content_type_is_a_warning_not_a_crash():
    message = msg("user", text("ok"), {"type": "hologram", "hologram": {}})
    conversion = convert(message)
    assert conversion.items[0]["content"] == [{"type": "input_text", "text": "ok"}]
    assert warning_texts(conversion) == [
        f"{message['id']}: content block of unknown type 'hologram' not sent"
    ]


def test_a_message_with_only_unknown_content_is_skipped():
    conversion = convert(msg("assistant", {"type": "hologram"}))
    assert conversion.items == [] and conversion.skipped_messages == 1


# --- order ----------------------------------------------------------------------------------------
def test_messages_are_ordered_by_created_at_with_ties_in_source_order():
    first, second, third = (
        msg("user", text(t), created_at=c) for t, c in (("b", 5), ("c", 5), ("a", 1))
    )
    conversion = convert(first, second, third)
    assert [i["content"][0]["text"] for i in conversion.items] == ["a", "b", "c"]


# --- tool calls -----------------------------------------------------------------------------------
def test_function_calls_with_output_go_before_the_message_their_run_created():
    question = msg("user", text("where is my order?"), created_at=1)
    answer = msg("assistant", text("It shipped."), created_at=3, run_id="run_1")
    conversion = convert(
        question,
        answer,
        steps=[step("run_1", function_call("call_1", '{"s":"shipped"}'), created_at=2)],
    )
    assert [i["type"] for i in conversion.items] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert conversion.items[1] == {
        "type": "function_call",
        "call_id": "call_1",
        "name": "lookup",
        "arguments": '{"q": 1}',
    }
    assert conversion.items[2] == {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": '{"s":"shipped"}',
    }


def test_several_calls_of_one_run_keep_their_order():
    answer = msg("assistant", text("done"), created_at=5, run_id="run_1")
    steps = [
        step("run_1", function_call("call_a"), function_call("call_b"), created_at=2),
        step("run_1", function_call("call_c"), created_at=3),
    ]
    conversion = convert(answer, steps=steps)
    calls = [i["call_id"] for i in conversion.items if i["type"] == "function_call"]
    assert calls == ["call_a", "call_b", "call_c"]


def test_a_function_call_without_output_is_not_sent_and_named():
    answer = msg("assistant", text("?"), run_id="run_1")
    conversion = convert(answer, steps=[step("run_1", function_call("call_x", output=None))])
    assert [i["type"] for i in conversion.items] == ["message"]
    assert (
        "function call call_x (lookup) not sent: it has no output" in warning_texts(conversion)[0]
    )


@pytest.mark.parametrize("kind", ["code_interpreter", "file_search"])
def test_code_interpreter_and_file_search_steps_are_not_sent_and_named(kind):
    call = {"id": "call_k", "type": kind, kind: {}}
    conversion = convert(msg("assistant", text("x"), run_id="run_1"), steps=[step("run_1", call)])
    assert len(conversion.items) == 1
    assert f"{kind} call call_k not sent" in warning_texts(conversion)[0]


def test_tool_call_items_can_be_switched_off():
    answer = msg("assistant", text("x"), run_id="run_1")
    conversion = convert(
        answer, steps=[step("run_1", function_call("call_1"))], options=Options(tool_calls=False)
    )
    assert [i["type"] for i in conversion.items] == ["message"]
    assert "function call call_1 not sent (tool calls are off)" in warning_texts(conversion)[0]


def test_calls_of_a_run_that_created_no_message_go_where_their_time_puts_them():
    early = msg("user", text("a"), created_at=1)
    late = msg("user", text("b"), created_at=9)
    conversion = convert(
        early, late, steps=[step("run_gone", function_call("call_1"), created_at=5)]
    )
    assert [i["type"] for i in conversion.items] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]


# --- metadata -------------------------------------------------------------------------------------
def test_thread_metadata_is_carried_with_source_thread_id_added():
    metadata, warnings = conversation_metadata({"id": "thread_m", "metadata": {"user": "u1"}})
    assert metadata == {"user": "u1", "source_thread_id": "thread_m"}
    assert warnings == []


def test_metadata_beyond_the_limits_is_left_out_by_a_deterministic_rule_with_warnings():
    source = {f"k{i:02d}": "v" for i in range(18)}
    source["x" * 65] = "long key"
    source["big"] = "v" * 513
    source["num"] = 5
    metadata, warnings = conversation_metadata({"id": "thread_m", "metadata": source})
    assert len(metadata) == 16
    assert list(metadata) == sorted(metadata)
    assert "source_thread_id" not in metadata
    texts = [w.text for w in warnings]
    assert "metadata key 'big' not carried over: its value is 513 characters (limit 512)" in texts
    assert "metadata key 'num' not carried over: its value is not a string" in texts
    assert any("its key is over 64 characters" in t for t in texts)
    assert sum("at most 16 keys" in t for t in texts) == 2  # k16 and k17
    assert texts[-1].startswith("no free metadata slot for source_thread_id")
    shuffled = dict(reversed(list(source.items())))
    assert conversation_metadata({"id": "thread_m", "metadata": shuffled})[0] == metadata


def test_a_thread_that_already_names_its_source_keeps_that_value():
    metadata, _ = conversation_metadata(
        {"id": "thread_m", "metadata": {"source_thread_id": "thread_orig"}}
    )
    assert metadata == {"source_thread_id": "thread_orig"}


# --- batching -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("count", "sizes"),
    [
        (1, [1]),
        (19, [19]),
        (20, [20]),
        (21, [20, 1]),
        (40, [20, 20]),
        (101, [20] * 5 + [1]),
        (250, [20] * 12 + [10]),
    ],
)
def test_threads_are_batched_in_calls_of_at_most_20(count, sizes):
    messages = [
        msg("user" if i % 2 else "assistant", text(f"m{i}"), created_at=i) for i in range(count)
    ]
    conversion = convert(*messages)
    assert [len(b) for b in conversion.batches] == sizes
    assert [i for b in conversion.batches for i in b] == conversion.items
    assert conversion.write_calls == 1 + len(sizes)
    assert conversion.verify_calls == max(1, -(-count // 100))


def test_batches_of_nothing_is_no_call():
    assert batches([]) == []


# --- the demo data set ----------------------------------------------------------------------------
def test_every_item_of_the_demo_data_set_is_valid():
    _, bundles = generate_dataset(seed=1, thread_count=60)
    for bundle in bundles:
        conversion = convert_thread(bundle["thread"], bundle["messages"], bundle["run_steps"])
        assert_valid_items(conversion.items)
        assert all(len(b) <= 20 for b in conversion.batches)
        assert all(isinstance(w, ConversionWarning) for w in conversion.warnings)


# --- the assistant --------------------------------------------------------------------------------
ASSISTANT = {
    "id": "asst_1",
    "object": "assistant",
    "name": "Support",
    "description": None,
    "model": "gpt-4o",
    "instructions": "Be brief.",
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Find an order",
                "parameters": {"type": "object", "properties": {}},
            },
        },
        {
            "type": "function",
            "function": {"name": "strict_one", "parameters": None, "strict": True},
        },
        {
            "type": "file_search",
            "file_search": {
                "max_num_results": 8,
                "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.4},
            },
        },
        {"type": "code_interpreter"},
    ],
    "tool_resources": {
        "file_search": {"vector_store_ids": ["vs_assistant"]},
        "code_interpreter": {"file_ids": ["file-a"]},
    },
    "metadata": {"team": "support"},
    "temperature": 0.3,
    "top_p": 0.9,
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "description": "d",
            "schema": {"type": "object"},
            "strict": True,
        },
    },
    "reasoning_effort": "low",
}
THREAD_WITH_RESOURCES = {
    "id": "thread_r",
    "tool_resources": {
        "file_search": {"vector_store_ids": ["vs_thread"]},
        "code_interpreter": {"file_ids": ["file-b"]},
    },
}


def test_an_assistant_becomes_a_responses_configuration():
    config, warnings = responses_config(ASSISTANT, THREAD_WITH_RESOURCES)
    assert_valid_response_config(config)
    assert config == {
        "model": "gpt-4o",
        "instructions": "Be brief.",
        "tools": [
            {
                "type": "function",
                "name": "lookup",
                "description": "Find an order",
                "parameters": {"type": "object", "properties": {}},
                "strict": False,
            },
            {"type": "function", "name": "strict_one", "parameters": None, "strict": True},
            {
                "type": "file_search",
                "vector_store_ids": ["vs_assistant", "vs_thread"],
                "max_num_results": 8,
                "ranking_options": {"ranker": "default-2024-11-15", "score_threshold": 0.4},
            },
            {
                "type": "code_interpreter",
                "container": {"type": "auto", "file_ids": ["file-a", "file-b"]},
            },
        ],
        "text": {
            "format": {
                "type": "json_schema",
                "name": "answer",
                "description": "d",
                "schema": {"type": "object"},
                "strict": True,
            }
        },
        "reasoning": {"effort": "low"},
        "temperature": 0.3,
        "top_p": 0.9,
        "metadata": {"team": "support"},
    }
    texts = [w.text for w in warnings]
    assert any("ranker 'default_2024_08_21' does not exist in Responses" in t for t in texts)
    assert any("thread vector stores expire" in t for t in texts)
    assert "name kept in the console only: Responses has no place for it" in texts


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ("auto", None),
        (None, None),
        ({"type": "text"}, {"type": "text"}),
        ({"type": "json_object"}, {"type": "json_object"}),
    ],
)
def test_response_formats_map_to_text_format(response_format, expected):
    config, _ = responses_config({**ASSISTANT, "response_format": response_format})
    assert_valid_response_config(config)
    assert config.get("text", {}).get("format") == expected


def test_file_search_without_vector_stores_is_left_out_with_a_warning():
    assistant = {**ASSISTANT, "tool_resources": {}, "tools": [{"type": "file_search"}]}
    config, warnings = responses_config(assistant)
    assert_valid_response_config(config)
    assert "tools" not in config
    assert "file_search left out: no vector store is attached to it" in [w.text for w in warnings]


def test_code_interpreter_always_gets_a_container():
    assistant = {**ASSISTANT, "tool_resources": None, "tools": [{"type": "code_interpreter"}]}
    config, _ = responses_config(assistant)
    assert_valid_response_config(config)
    assert config["tools"] == [
        {"type": "code_interpreter", "container": {"type": "auto", "file_ids": []}}
    ]


def test_every_demo_assistant_configuration_is_a_valid_responses_request():
    assistants, bundles = generate_dataset(seed=1, thread_count=5)
    for assistant, bundle in zip(assistants, bundles, strict=False):
        assert_valid_response_config(responses_config(assistant, bundle["thread"])[0])

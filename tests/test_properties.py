"""Properties of the conversion over generated threads (hypothesis)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrations_app.conversion import convert_thread
from tests.validity import REJECTED_ITEMS, assert_valid_item, assert_valid_items

texts = st.text(min_size=0, max_size=200)
file_ids = st.from_regex(r"file-[A-Za-z0-9]{6}", fullmatch=True)
details = st.sampled_from([None, "auto", "low", "high"])


def _image_url(url, detail):
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def _image_file(file_id, detail):
    return {"type": "image_file", "image_file": {"file_id": file_id, "detail": detail}}


text_blocks = texts.map(lambda t: {"type": "text", "text": {"value": t, "annotations": []}})
user_blocks = st.one_of(
    text_blocks,
    st.builds(
        _image_url, st.from_regex(r"https://example\.com/[a-z]{1,8}\.png", fullmatch=True), details
    ),
    st.builds(_image_file, file_ids, details),
)
assistant_blocks = st.one_of(
    text_blocks,
    texts.map(lambda t: {"type": "refusal", "refusal": t}),
    st.builds(_image_file, file_ids, details),
)
attachments = st.lists(
    st.builds(
        lambda f, tools: {"file_id": f, "tools": [{"type": t} for t in tools]},
        file_ids,
        st.lists(st.sampled_from(["code_interpreter", "file_search"]), unique=True),
    ),
    max_size=2,
)


@st.composite
def threads(draw):
    count = draw(st.integers(min_value=0, max_value=45))
    messages, steps = [], []
    clock = 0
    for index in range(count):
        role = draw(st.sampled_from(["user", "assistant"]))
        clock += draw(st.integers(min_value=0, max_value=3))  # ties are common
        run_id = f"run_{index}" if role == "assistant" else None
        blocks = user_blocks if role == "user" else assistant_blocks
        messages.append(
            {
                "id": f"msg_{index:04d}",
                "role": role,
                "created_at": clock,
                "content": draw(st.lists(blocks, max_size=3)),
                "attachments": draw(attachments) if role == "user" else [],
                "run_id": run_id,
            }
        )
        if run_id and draw(st.booleans()):
            output = draw(st.one_of(st.none(), texts))
            steps.append(
                {
                    "id": f"step_{index:04d}",
                    "run_id": run_id,
                    "created_at": clock,
                    "type": "tool_calls",
                    "step_details": {
                        "type": "tool_calls",
                        "tool_calls": [
                            {
                                "id": f"call_{index:04d}",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}", "output": output},
                            }
                        ],
                    },
                }
            )
    return {"id": "thread_prop", "metadata": {}}, messages, steps


def sent_texts(items):
    return [
        part["text"]
        for item in items
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] in ("input_text", "output_text")
    ]


PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def stable_by_time(messages):
    return sorted(messages, key=lambda m: m["created_at"])  # sorted() is stable: ties keep order


@PROPERTY
@given(threads())
def test_text_is_never_altered(thread):
    meta, messages, steps = thread
    sent = iter(sent_texts(convert_thread(meta, messages, steps).items))
    source = [
        block["text"]["value"]
        for m in stable_by_time(messages)
        for block in m["content"]
        if block["type"] == "text"
    ]
    # Every source text is sent, byte for byte, in order (markers may stand between them).
    assert all(any(text == candidate for candidate in sent) for text in source)


@PROPERTY
@given(threads())
def test_no_batch_exceeds_20_and_batches_keep_every_item_in_order(thread):
    conversion = convert_thread(*thread)
    assert all(1 <= len(batch) <= 20 for batch in conversion.batches)
    assert [item for batch in conversion.batches for item in batch] == conversion.items


@PROPERTY
@given(st.lists(st.integers(min_value=0, max_value=5), max_size=60))
def test_item_order_follows_message_order(times):
    messages = [
        {
            "id": f"msg_{i}",
            "role": "user",
            "created_at": t,
            "attachments": [],
            "content": [{"type": "text", "text": {"value": str(i), "annotations": []}}],
        }
        for i, t in enumerate(times)
    ]
    items = convert_thread({"id": "thread_o", "metadata": {}}, messages).items
    assert sent_texts(items) == [m["content"][0]["text"]["value"] for m in stable_by_time(messages)]


@PROPERTY
@given(threads())
def test_every_user_image_and_attachment_appears_once(thread):
    meta, messages, steps = thread
    items = convert_thread(meta, messages, steps).items
    parts = [p for i in items if i.get("role") == "user" for p in i["content"]]
    images = [
        (b.get("image_url") or {}).get("url") or (b.get("image_file") or {}).get("file_id")
        for m in messages
        if m["role"] == "user"
        for b in m["content"]
        if b["type"] in ("image_url", "image_file")
    ]
    sent_images = [
        p.get("image_url") or p.get("file_id") for p in parts if p["type"] == "input_image"
    ]
    assert sorted(sent_images) == sorted(images)
    attached = [a["file_id"] for m in messages for a in m["attachments"]]
    assert sorted(p["file_id"] for p in parts if p["type"] == "input_file") == sorted(attached)


@PROPERTY
@given(threads())
def test_the_conversion_is_deterministic(thread):
    first, second = convert_thread(*thread), convert_thread(*thread)
    assert first.items == second.items
    assert first.warnings == second.warnings
    assert first.metadata == second.metadata


@settings(max_examples=40, deadline=None)
@given(threads())
def test_every_generated_item_is_valid(thread):
    assert_valid_items(convert_thread(*thread).items)


@pytest.mark.parametrize(
    "item",
    [
        *REJECTED_ITEMS,
        {"role": "assistant", "content": [{"type": "output_text", "text": "x"}]},
        {"role": "assistant", "content": "plain"},  # valid for the API, but not what we send
    ],
)
def test_the_validity_check_itself_rejects_invalid_items(item: dict) -> None:
    """An AssertionError that says why, not any exception: a validator that crashes must fail."""
    with pytest.raises(AssertionError, match=r"Invalid '|not the guide's assistant form"):
        assert_valid_item(item)

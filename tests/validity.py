"""Every item we send must be valid for the SDK's typed params (installed with the project), except
the one documented form (DESIGN.md): assistant messages as a list of output_text parts.

This layer always runs. The cross-check against OpenAI's published spec is the optional layer in
tests/test_spec.py.
"""

from functools import cache

from openai.types.responses.response_create_params import ResponseCreateParamsNonStreaming
from pydantic import ConfigDict, TypeAdapter

from migrations_app.sandbox.validation import (
    InvalidRequest,
    is_guide_assistant_message,
    validate_item,
    validate_typed,
)

USER_ITEM = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
GUIDE_FORM = {
    "role": "assistant",
    "content": [{"type": "output_text", "text": "x", "annotations": []}],
}
# Items the API's contract accepts and rejects: the sandbox must agree (test_sandbox.py), and so
# must the published spec (test_spec.py).
ACCEPTED_ITEMS = [
    USER_ITEM,
    {"role": "user", "content": "plain"},
    {"role": "assistant", "content": "plain"},
    {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"},
            {"type": "input_file", "file_id": "file-1"},
        ],
    },
    {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "call_1", "output": "{}"},
]
REJECTED_ITEMS = [
    {"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "u"}]},
    {"type": "message", "role": "user", "content": [{"type": "input_text"}]},
    {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
    {"type": "function_call", "call_id": "c", "name": "f"},
    {"type": "no_such_item"},
]


def spec_valid_twin(item: dict) -> dict:
    """The guide-form assistant message as an output message: the same content plus the fields the
    typed params (and the spec) require. If the twin is valid, the item differs from the contract
    only by the documented exception."""
    return {
        **item,
        "id": "msg_twin",
        "status": "completed",
        "content": [{**part, "logprobs": []} for part in item["content"]],
    }


def assert_valid_item(item: dict) -> None:
    """AssertionError, naming the param, for an item the API would refuse; nothing else."""
    if item.get("type", "message") == "message" and item.get("role") == "assistant":
        assert is_guide_assistant_message(item), f"not the guide's assistant form: {item}"
        item = spec_valid_twin(item)
    try:
        validate_item(item, "items[0]")
    except InvalidRequest as error:
        raise AssertionError(f"{error.message} {item}") from None


def assert_valid_items(items: list[dict]) -> None:
    for item in items:
        assert_valid_item(item)


@cache
def _response_config_adapter() -> TypeAdapter:
    # A list of one: pydantic takes no config for a bare TypedDict, and the API refuses unknown
    # keys as extra="forbid" does.
    return TypeAdapter(list[ResponseCreateParamsNonStreaming], config=ConfigDict(extra="forbid"))


def assert_valid_response_config(config: dict) -> None:
    """The configuration is a valid `responses.create` body once an input is added."""
    try:
        validate_typed(_response_config_adapter(), [{**config, "input": "hi"}], "body")
    except InvalidRequest as error:
        raise AssertionError(f"{error.message} {config}") from None

"""Every item we send must be valid for the SDK's typed params and the published spec, except the
one documented form (DESIGN.md): assistant messages as a list of output_text parts."""

from migrations_app.sandbox.validation import is_guide_assistant_message, validate_item
from tests import spec


def spec_valid_twin(item):
    """The guide-form assistant message as the spec's OutputMessage: the same content plus the
    fields the spec requires. If the twin is valid, the item differs from the spec only by the
    documented exception."""
    return {
        **item,
        "id": "msg_twin",
        "status": "completed",
        "content": [{**part, "logprobs": []} for part in item["content"]],
    }


def assert_valid_item(item):
    if item.get("type", "message") == "message" and item.get("role") == "assistant":
        assert is_guide_assistant_message(item), item
        assert not spec.errors(spec_valid_twin(item), "InputItem"), item
        validate_item({k: v for k, v in spec_valid_twin(item).items()}, "items[0]")
    else:
        validate_item(item, "items[0]")
        assert not spec.errors(item, "InputItem"), item


def assert_valid_items(items):
    for item in items:
        assert_valid_item(item)

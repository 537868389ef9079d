"""Request-body validation with the SDK's own typed params, as the real API would apply it.

The one documented exception (DESIGN.md): an assistant message whose content is a list of
`output_text` parts with `annotations: []` — the form OpenAI's migration guide uses and the live
API accepts, which the published spec and the SDK types do not describe (openai/openai-openapi#475).
"""

from collections.abc import Collection, Iterator
from functools import cache
from typing import Any

from openai.types.responses import ResponseInputItemParam
from pydantic import ConfigDict, TypeAdapter, ValidationError

MAX_ITEMS_PER_CALL = 20
METADATA_MAX_KEYS = 16
METADATA_MAX_KEY_LENGTH = 64
METADATA_MAX_VALUE_LENGTH = 512


class InvalidRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@cache
def _item_adapter() -> TypeAdapter[Any]:
    # extra="forbid": the real API answers "Unknown parameter" for keys it does not know.
    return TypeAdapter(ResponseInputItemParam, config=ConfigDict(extra="forbid"))


def is_guide_assistant_message(item: object) -> bool:
    """True for exactly the documented exception and nothing wider."""
    if not isinstance(item, dict) or set(item) - {"type", "role", "content"}:
        return False
    if item.get("role") != "assistant" or item.get("type", "message") != "message":
        return False
    content = item.get("content")
    if not isinstance(content, list) or not content:
        return False
    return all(
        isinstance(part, dict)
        and set(part) == {"type", "text", "annotations"}
        and part["type"] == "output_text"
        and isinstance(part["text"], str)
        and part["annotations"] == []
        for part in content
    )


def _closest_error(error: ValidationError, prefix: str, labelled: bool = True) -> InvalidRequest:
    """Pick, of a union's many errors, the one from the member that matched furthest.

    Members whose `type` or `role` literal did not match are discarded (the API dispatches on
    them); of the rest, the deepest error wins.
    """
    details = error.errors()
    dead = [
        d["loc"][:-1]
        for d in details
        if d["type"] == "literal_error" and d["loc"] and d["loc"][-1] in ("type", "role")
    ]
    alive = [d for d in details if not any(d["loc"][: len(p)] == p for p in dead)] or details
    detail = max(alive, key=lambda d: len(d["loc"]))
    path = prefix
    for part in detail["loc"][1:] if labelled else detail["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part[0].isupper() or part.startswith(("list[", "union[", "str", "function-")):
            continue  # a pydantic union-member label, not a field name
        else:
            path += f".{part}"
    return InvalidRequest(f"Invalid '{path}': {detail['msg']}.", param=path)


class _LazyElementError(Exception):
    def __init__(self, error: ValidationError, path: str) -> None:
        self.error = error
        self.path = path


def _drain(value: object, path: str) -> None:
    """pydantic validates `Iterable[...]` fields (which the SDK uses for lists) lazily; walk the
    result so every element is checked now, remembering where we are for the error message."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _drain(inner, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            _drain(inner, f"{path}[{index}]")
    elif type(value).__name__ == "ValidatorIterator" and isinstance(value, Iterator):
        try:
            for index, inner in enumerate(value):
                _drain(inner, f"{path}[{index}]")
        except ValidationError as error:
            raise _LazyElementError(error, path) from None


def validate_typed(adapter: TypeAdapter[Any], value: object, param: str) -> None:
    """Validate `value` with one of the SDK's typed params; an error names the param the way the
    API does."""
    try:
        _drain(adapter.validate_python(value), param)
    except ValidationError as error:
        raise _closest_error(error, param) from None
    except _LazyElementError as lazy:
        raise _closest_error(lazy.error, lazy.path, labelled=False) from None


def validate_item(item: object, param: str) -> None:
    if is_guide_assistant_message(item):
        return
    validate_typed(_item_adapter(), item, param)


def validate_items(items: object, param: str = "items", *, required: bool) -> None:
    if items is None:
        if required:
            raise InvalidRequest(f"Missing required parameter: '{param}'.", param, "missing")
        return
    if not isinstance(items, list):
        raise InvalidRequest(f"Invalid type for '{param}': expected an array.", param)
    if required and not items:
        raise InvalidRequest(f"Invalid '{param}': empty array.", param, "empty_array")
    if len(items) > MAX_ITEMS_PER_CALL:
        raise InvalidRequest(
            f"Invalid '{param}': array too long. Expected an array with maximum length "
            f"{MAX_ITEMS_PER_CALL}, but got an array with length {len(items)} instead.",
            param,
            "array_above_max_length",
        )
    for index, item in enumerate(items):
        validate_item(item, f"{param}[{index}]")


def validate_metadata(metadata: object, param: str = "metadata") -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise InvalidRequest(f"Invalid type for '{param}': expected an object.", param)
    if len(metadata) > METADATA_MAX_KEYS:
        raise InvalidRequest(
            f"Invalid '{param}': too many properties. Expected an object with at most "
            f"{METADATA_MAX_KEYS} properties, but got {len(metadata)} instead.",
            param,
        )
    for key, value in metadata.items():
        if len(key) > METADATA_MAX_KEY_LENGTH:
            raise InvalidRequest(
                f"Invalid '{param}': key '{key[:20]}…' is longer than "
                f"{METADATA_MAX_KEY_LENGTH} characters.",
                f"{param}.{key}",
            )
        if not isinstance(value, str):
            raise InvalidRequest(
                f"Invalid type for '{param}.{key}': expected a string.", f"{param}.{key}"
            )
        if len(value) > METADATA_MAX_VALUE_LENGTH:
            raise InvalidRequest(
                f"Invalid '{param}.{key}': string too long. Expected a string with maximum "
                f"length {METADATA_MAX_VALUE_LENGTH}, but got a string with length "
                f"{len(value)} instead.",
                f"{param}.{key}",
                "string_above_max_length",
            )


def check_known_keys(body: dict[str, Any], allowed: Collection[str]) -> None:
    for key in body:
        if key not in allowed:
            raise InvalidRequest(f"Unknown parameter: '{key}'.", key, "unknown_parameter")

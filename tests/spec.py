"""OpenAI's published OpenAPI description, read from the copy OPENAI_SPEC names (never copied
into this project). Only the optional spec layer, tests/test_spec.py, uses it.
"""

import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

VARIABLE = "OPENAI_SPEC"


def configured_path() -> Path | None:
    """The file OPENAI_SPEC names, or None when it is unset or empty."""
    value = os.environ.get(VARIABLE, "").strip()
    return Path(value) if value else None


def _as_any_of(node: object) -> object:
    """oneOf read as anyOf (the spec relies on discriminators a JSON-Schema validator ignores);
    dates PyYAML made from unquoted values turned back into strings."""
    if isinstance(node, dict):
        return {
            ("anyOf" if key == "oneOf" else key): _as_any_of(value)
            for key, value in node.items()
            if key != "discriminator"
        }
    if isinstance(node, list):
        return [_as_any_of(value) for value in node]
    if hasattr(node, "isoformat"):
        return node.isoformat()
    return node


@cache
def components() -> dict:
    path = configured_path()
    if path is None:
        raise LookupError(f"{VARIABLE} is not set")
    import yaml

    with open(path, encoding="utf-8") as handle:
        spec = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return _as_any_of(spec["components"])


def _validator(schema: dict) -> "Draft202012Validator":
    from jsonschema import Draft202012Validator

    return Draft202012Validator({"components": components(), **schema})


@cache
def schema_validator(name: str) -> "Draft202012Validator":
    return _validator({"$ref": f"#/components/schemas/{name}"})


@cache
def items_body_validator() -> "Draft202012Validator":
    """POST /conversations/{id}/items, as the spec's path describes its body."""
    return _validator(
        {
            "type": "object",
            "required": ["items"],
            "properties": {
                "items": {
                    "type": "array",
                    "maxItems": 20,
                    "items": {"$ref": "#/components/schemas/InputItem"},
                }
            },
        }
    )


def errors(instance: object, schema_name: str) -> list[str]:
    return [error.message for error in schema_validator(schema_name).iter_errors(instance)]


def items_body_errors(body: object) -> list[str]:
    return [error.message for error in items_body_validator().iter_errors(body)]

"""The published OpenAPI description, read from ../shared/openai-spec (never copied here).

OPENAI_SPEC may point elsewhere. Where the file is absent (a clone outside our CI) the tests that
need it skip and say why; in CI (CI=true) a missing spec is an error, not a skip.
"""

import os
from functools import cache
from pathlib import Path

import pytest

DEFAULT = Path(__file__).resolve().parent.parent.parent / "shared" / "openai-spec" / "openapi.yaml"


def spec_path():
    return Path(os.environ.get("OPENAI_SPEC") or DEFAULT)


def _as_any_of(node):
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
def components():
    path = spec_path()
    if not path.exists():
        if os.environ.get("CI"):
            raise FileNotFoundError(f"The OpenAPI spec is missing at {path}; CI must have it")
        pytest.skip(f"OpenAPI spec not found at {path} (set OPENAI_SPEC to run spec checks)")
    import yaml

    with open(path, encoding="utf-8") as handle:
        spec = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return _as_any_of(spec["components"])


def _validator(schema):
    from jsonschema import Draft202012Validator

    return Draft202012Validator({"components": components(), **schema})


@cache
def schema_validator(name):
    return _validator({"$ref": f"#/components/schemas/{name}"})


@cache
def items_body_validator():
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


def errors(instance, schema_name):
    return [error.message for error in schema_validator(schema_name).iter_errors(instance)]


def items_body_errors(body):
    return [error.message for error in items_body_validator().iter_errors(body)]

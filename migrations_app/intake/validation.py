"""What a thread bundle or an assistant must look like before intake stores it.

The checks are exactly what conversion (migrations_app/conversion.py), the thread page and the
database need, so that nothing intake accepted can crash them later: types, required fields,
lengths the columns allow, timestamps as whole Unix seconds, unique ids. Plain checks, no schema
library: an export of 5,000 threads × 25 messages is checked in a fraction of its parse time.

Each check returns the first problem found, in words that name where it is
(``messages[3] (msg_abc).created_at …``), or None.
"""

import re
from typing import Any

THREAD_ID = re.compile(r"^thread_[A-Za-z0-9_-]{1,57}$")
ID_MAX_LENGTH = 64  # message, run step, run, assistant and thread ids: the model columns
ROLES = ("user", "assistant")
IMAGE_DETAILS = (None, "auto", "low", "high")
# Whole Unix seconds up to the year 5138; anything larger is milliseconds (or not a time at all).
MAX_UNIX_SECONDS = 100_000_000_000
SHOWN = 60  # characters of a bad value quoted in an error


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"


def type_name(value: Any) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def timestamp_problem(value: Any, where: str) -> str | None:
    """Why `value` is not whole Unix seconds, or None."""
    if type(value) is int:
        if 0 <= value < MAX_UNIX_SECONDS:
            return None
        if value < 0:
            return f"{where} is negative ({value}): expected Unix seconds"
        return (
            f"{where} is {value}, which looks like milliseconds: expected whole Unix seconds "
            f"(e.g. {value // 1000})"
        )
    if value is None:
        return f"{where} is missing: expected an integer of Unix seconds"
    if isinstance(value, float):
        return f"{where} is {value!r}, not a whole number: expected an integer of Unix seconds"
    return f"{where} is {type_name(value)} ({_shown(value)}): expected an integer of Unix seconds"


def _id_problem(value: Any, where: str, *, required: bool = True) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= ID_MAX_LENGTH:
        return None
    if value is None and not required:
        return None
    if isinstance(value, str):
        if not value:
            return f"{where} is empty"
        return f"{where} is {len(value)} characters long (at most {ID_MAX_LENGTH})"
    if value is None:
        return f"{where} is missing"
    return f"{where} is {type_name(value)} ({_shown(value)}): expected a string"


def _optional_string(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return None
    return f"{where} is {type_name(value)} ({_shown(value)}): expected a string or null"


def _string_list(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, list):
        return f"{where} is {type_name(value)}: expected a list of strings"
    for index, item in enumerate(value):
        if not isinstance(item, str):
            return f"{where}[{index}] is {type_name(item)}: expected a string"
    return None


# The resources conversion reads; any other tool's (Azure's `azure_ai_search` indexes, its `mcp`
# list, …) is kept as it came and shown.
READ_RESOURCES = ("code_interpreter", "file_search")


def _tool_resources_problem(resources: Any, where: str) -> str | None:
    """{tool: {"file_ids"|"vector_store_ids": [str]}}, any part null, for the tools conversion
    reads; other tools' resources may take any shape."""
    if resources is None:
        return None
    if not isinstance(resources, dict):
        return f"{where} is {type_name(resources)}: expected an object"
    for tool, entry in resources.items():
        if entry is None or tool not in READ_RESOURCES:
            continue
        if not isinstance(entry, dict):
            return f"{where}.{tool} is {type_name(entry)}: expected an object"
        for key in ("file_ids", "vector_store_ids"):
            if problem := _string_list(entry.get(key), f"{where}.{tool}.{key}"):
                return problem
    return None


# --- content blocks -----------------------------------------------------------------------------
def _text_problem(block: dict, where: str) -> str | None:
    text = block.get("text")
    if not isinstance(text, dict):
        return (
            f"{where}.text is {type_name(text)}: a text block is "
            '{"type": "text", "text": {"value": "…", "annotations": […]}}'
        )
    if not isinstance(text.get("value"), str):
        return f"{where}.text.value is {type_name(text.get('value'))}: expected a string"
    annotations = text.get("annotations")
    if not isinstance(annotations, list):
        return f"{where}.text.annotations is {type_name(annotations)}: expected a list"
    for index, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            return f"{where}.text.annotations[{index}] is {type_name(annotation)}"
        kind = annotation.get("type")
        if not isinstance(kind, str):
            return f"{where}.text.annotations[{index}].type is {type_name(kind)}"
        if not isinstance(annotation.get(kind) or {}, dict):
            return f"{where}.text.annotations[{index}].{kind} is not an object"
    return None


def _image_problem(block: dict, kind: str, key: str, where: str) -> str | None:
    image = block.get(kind)
    if not isinstance(image, dict):
        return f"{where}.{kind} is {type_name(image)}: expected an object with {key!r}"
    value = image.get(key)
    if not isinstance(value, str) or not value:
        return f"{where}.{kind}.{key} is {type_name(value)}: expected a non-empty string"
    if image.get("detail") not in IMAGE_DETAILS:
        return f"{where}.{kind}.detail is {_shown(image.get('detail'))}: expected auto, low or high"
    return None


def _block_problem(block: Any, where: str) -> str | None:
    if not isinstance(block, dict):
        return f"{where} is {type_name(block)}: expected a content block object"
    kind = block.get("type")
    if kind == "text":
        return _text_problem(block, where)
    if kind == "image_url":
        return _image_problem(block, "image_url", "url", where)
    if kind == "image_file":
        return _image_problem(block, "image_file", "file_id", where)
    if kind == "refusal":
        if not isinstance(block.get("refusal"), str):
            return f"{where}.refusal is {type_name(block.get('refusal'))}: expected a string"
        return None
    if not isinstance(kind, str):
        return f"{where}.type is {type_name(kind)}: expected a string"
    return None  # an unknown block type: conversion leaves it out with a warning


def _attachments_problem(attachments: Any, where: str) -> str | None:
    if attachments is None:
        return None
    if not isinstance(attachments, list):
        return f"{where} is {type_name(attachments)}: expected a list"
    for index, attachment in enumerate(attachments):
        at = f"{where}[{index}]"
        if not isinstance(attachment, dict):
            return f"{at} is {type_name(attachment)}: expected an object"
        file_id = attachment.get("file_id")
        if file_id is None and "data_source" in attachment:  # Azure: an asset, not a file
            source = attachment["data_source"]
            if not isinstance(source, dict) or not isinstance(source.get("uri"), str):
                return f"{at}.data_source is not an object with a uri (Azure's data source)"
        elif not isinstance(file_id, str) or not file_id:
            return f"{at}.file_id is {type_name(file_id)}: expected a non-empty string"
        tools = attachment.get("tools")
        if tools is None:
            continue
        if not isinstance(tools, list):
            return f"{at}.tools is {type_name(tools)}: expected a list"
        for number, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
                return f"{at}.tools[{number}] is not an object with a string type"
    return None


def message_problem(message: Any, index: int) -> str | None:
    if not isinstance(message, dict):
        return f"messages[{index}] is {type_name(message)}: expected a message object"
    message_id = message.get("id")
    if problem := _id_problem(message_id, f"messages[{index}].id"):
        return problem
    where = f"messages[{index}] ({message_id})"
    role = message.get("role")
    if role not in ROLES:
        return f"{where}.role is {_shown(role)}: expected user or assistant"
    created_at = message.get("created_at")
    if type(created_at) is not int or not 0 <= created_at < MAX_UNIX_SECONDS:
        return timestamp_problem(created_at, f"{where}.created_at")
    content = message.get("content")
    if not isinstance(content, list):
        return f"{where}.content is {type_name(content)}: expected a list of content blocks"
    for number, block in enumerate(content):
        # The common case first, cheaply: a text block of the right shape.
        if (
            type(block) is dict
            and block.get("type") == "text"
            and type(text := block.get("text")) is dict
            and type(text.get("value")) is str
            and text.get("annotations") == []
        ):
            continue
        if problem := _block_problem(block, f"{where}.content[{number}]"):
            return problem
    attachments = message.get("attachments")
    if attachments and (problem := _attachments_problem(attachments, f"{where}.attachments")):
        return problem
    for key in ("run_id", "assistant_id"):
        if (value := message.get(key)) is not None and (
            problem := _id_problem(value, f"{where}.{key}")
        ):
            return problem
    return None


# --- run steps and runs -------------------------------------------------------------------------
def _tool_call_problem(call: Any, where: str) -> str | None:
    if not isinstance(call, dict):
        return f"{where} is {type_name(call)}: expected a tool call object"
    kind = call.get("type")
    if not isinstance(kind, str):
        return f"{where}.type is {type_name(kind)}: expected a string"
    call_id = call.get("id")
    if kind != "function":
        if call_id is not None and not isinstance(call_id, str):
            return f"{where}.id is {type_name(call_id)}: expected a string"
        return None
    if not isinstance(call_id, str) or not call_id:
        return f"{where}.id is {type_name(call_id)}: expected a non-empty string"
    function = call.get("function")
    if not isinstance(function, dict):
        return f"{where}.function is {type_name(function)}: expected an object"
    if not isinstance(function.get("name"), str):
        return f"{where}.function.name is {type_name(function.get('name'))}: expected a string"
    for key in ("arguments", "output"):
        if problem := _optional_string(function.get(key), f"{where}.function.{key}"):
            return problem
    return None


def step_problem(step: Any, index: int) -> str | None:
    """Steps that carry tool calls are stored and converted; others only need to be objects."""
    if not isinstance(step, dict):
        return f"run_steps[{index}] is {type_name(step)}: expected a run step object"
    if step.get("type") != "tool_calls":
        return None
    step_id = step.get("id")
    if problem := _id_problem(step_id, f"run_steps[{index}].id"):
        return problem
    where = f"run_steps[{index}] ({step_id})"
    if problem := _id_problem(step.get("run_id"), f"{where}.run_id"):
        return problem
    created_at = step.get("created_at")
    if type(created_at) is not int or not 0 <= created_at < MAX_UNIX_SECONDS:
        return timestamp_problem(created_at, f"{where}.created_at")
    details = step.get("step_details")
    if details is None:
        return None
    if not isinstance(details, dict):
        return f"{where}.step_details is {type_name(details)}: expected an object"
    calls = details.get("tool_calls")
    if calls is None:
        return None
    if not isinstance(calls, list):
        return f"{where}.step_details.tool_calls is {type_name(calls)}: expected a list"
    for number, call in enumerate(calls):
        if problem := _tool_call_problem(call, f"{where}.step_details.tool_calls[{number}]"):
            return problem
    return None


def _run_problem(run: Any, index: int) -> str | None:
    if not isinstance(run, dict):
        return f"runs[{index}] is {type_name(run)}: expected a run object"
    assistant_id = run.get("assistant_id")
    if assistant_id is not None:
        return _id_problem(assistant_id, f"runs[{index}].assistant_id")
    return None


# --- what an export said beyond the API's objects ------------------------------------------------
EXPORT_ERROR_FIELDS = ("object", "id", "error", "detail")
FILE_TEXT_FIELDS = ("id", "filename", "purpose", "status")


def export_problem(export: Any) -> str | None:
    """The bundle's `export` (what a layout reader kept of the export beyond the API's objects:
    see Thread.export_info): an object with text fields, `errors` a list of objects with text
    fields, `files` an object of File objects."""
    if not isinstance(export, dict):
        return f"'export' is {type_name(export)}: expected an object"
    for key in ("layout", "exported_at"):
        if problem := _optional_string(export.get(key), f"export.{key}"):
            return problem
    errors = export.get("errors")
    if errors is not None:
        if not isinstance(errors, list):
            return f"errors is {type_name(errors)}: expected a list of error objects"
        for index, error in enumerate(errors):
            if not isinstance(error, dict):
                return f"errors[{index}] is {type_name(error)}: expected an object"
            for key in EXPORT_ERROR_FIELDS:
                if problem := _optional_string(error.get(key), f"errors[{index}].{key}"):
                    return problem
    files = export.get("files")
    if files is not None:
        if not isinstance(files, dict):
            return f"files is {type_name(files)}: expected an object of File objects by id"
        for file_id, file in files.items():
            if not isinstance(file, dict):
                return f"files[{file_id!r}] is {type_name(file)}: expected a File object"
            for key in FILE_TEXT_FIELDS:
                if problem := _optional_string(file.get(key), f"files[{file_id!r}].{key}"):
                    return problem
            size = file.get("bytes")
            if size is not None and (type(size) is not int or size < 0):
                return f"files[{file_id!r}].bytes is {_shown(size)}: expected a whole number"
    return None


# --- the bundle ---------------------------------------------------------------------------------
def thread_problem(thread: Any) -> str | None:
    if not isinstance(thread, dict):
        return f"'thread' is {type_name(thread)}: expected the Thread object"
    thread_id = thread.get("id")
    if not isinstance(thread_id, str):
        return f"thread.id is {type_name(thread_id)}: expected a thread id (thread_…)"
    if not THREAD_ID.match(thread_id):
        return f"{_shown(thread_id)} is not a thread id (expected thread_…, at most 64 characters)"
    if thread.get("created_at") is not None and (
        problem := timestamp_problem(thread["created_at"], "thread.created_at")
    ):
        return problem
    metadata = thread.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(type(key) is str for key in metadata)
    ):
        return f"thread.metadata is {type_name(metadata)}: expected an object"
    return _tool_resources_problem(thread.get("tool_resources"), "thread.tool_resources")


def check_bundle(bundle: Any) -> str | None:
    """The reason a parsed export object cannot be stored and migrated, or None if it can."""
    if not isinstance(bundle, dict):
        return f"expected a thread bundle object, found {type_name(bundle)}"
    if "thread" not in bundle:
        return 'no \'thread\' key: expected {"thread": …, "messages": […], …}'
    if problem := thread_problem(bundle["thread"]):
        return problem
    if "messages" not in bundle:
        return (
            "no 'messages' key: a thread without its messages would migrate as an empty "
            'conversation (an empty thread has "messages": [])'
        )
    messages = bundle["messages"]
    if not isinstance(messages, list):
        return f"'messages' is {type_name(messages)}: expected a list"
    for key in ("runs", "run_steps"):
        if bundle.get(key) is not None and not isinstance(bundle[key], list):
            return f"'{key}' is {type_name(bundle[key])}: expected a list"
    if bundle.get("export") is not None and (problem := export_problem(bundle["export"])):
        return problem
    seen: set[str] = set()
    for index, message in enumerate(messages):
        if problem := message_problem(message, index):
            return problem
        if message["id"] in seen:
            return f"messages[{index}].id {message['id']!r} appears twice in the thread"
        seen.add(message["id"])
    for index, run in enumerate(bundle.get("runs") or ()):
        if problem := _run_problem(run, index):
            return problem
    steps: set[str] = set()
    for index, step in enumerate(bundle.get("run_steps") or ()):
        if problem := step_problem(step, index):
            return problem
        if step.get("type") == "tool_calls":
            if step["id"] in steps:
                return f"run_steps[{index}].id {step['id']!r} appears twice in the thread"
            steps.add(step["id"])
    return None


# --- assistants ---------------------------------------------------------------------------------
def _assistant_tool_problem(tool: Any, where: str) -> str | None:
    if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
        return f"{where} is not an object with a string type"
    for key in ("function", "file_search"):
        if tool.get(key) is not None and not isinstance(tool[key], dict):
            return f"{where}.{key} is {type_name(tool[key])}: expected an object"
    ranking = (tool.get("file_search") or {}).get("ranking_options")
    if ranking is not None:
        if not isinstance(ranking, dict):
            return f"{where}.file_search.ranking_options is {type_name(ranking)}"
        if problem := _optional_string(ranking.get("ranker"), f"{where}...ranker"):
            return problem
    return None


def check_assistant(assistant: Any) -> str | None:
    """The reason an Assistant object cannot be stored and shown, or None."""
    if not isinstance(assistant, dict):
        return f"expected an Assistant object, found {type_name(assistant)}"
    assistant_id = assistant.get("id")
    if problem := _id_problem(assistant_id, "id"):
        return problem
    for key in ("name", "model", "instructions", "description"):
        if problem := _optional_string(assistant.get(key), f"{assistant_id}.{key}"):
            return problem
    if assistant.get("created_at") is not None and (
        problem := timestamp_problem(assistant["created_at"], f"{assistant_id}.created_at")
    ):
        return problem
    tools = assistant.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return f"{assistant_id}.tools is {type_name(tools)}: expected a list"
        for index, tool in enumerate(tools):
            if problem := _assistant_tool_problem(tool, f"{assistant_id}.tools[{index}]"):
                return problem
    if problem := _tool_resources_problem(
        assistant.get("tool_resources"), f"{assistant_id}.tool_resources"
    ):
        return problem
    response_format = assistant.get("response_format")
    if response_format not in (None, "auto") and not isinstance(response_format, dict):
        return f"{assistant_id}.response_format is {_shown(response_format)}"
    if isinstance(response_format, dict) and not isinstance(
        response_format.get("json_schema") or {}, dict
    ):
        return f"{assistant_id}.response_format.json_schema is not an object"
    metadata = assistant.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return f"{assistant_id}.metadata is {type_name(metadata)}: expected an object"
    return None

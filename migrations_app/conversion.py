"""Assistants objects → Conversations items and a Responses configuration. Pure: dicts in, dicts
out, no Django, no I/O. The rules are DESIGN.md's "Conversion rules"; each loss is a warning
that names its source object, what was lost or changed, and why.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_ITEMS_PER_CALL = 20
# JSON per write call: well under any request-body limit; a 413 halves a batch further.
MAX_BATCH_BYTES = 4 * 1024 * 1024
ITEMS_PER_VERIFY_PAGE = 100
METADATA_MAX_KEYS = 16
METADATA_MAX_KEY_LENGTH = 64
METADATA_MAX_VALUE_LENGTH = 512
CALL_ID_MAX_LENGTH = 64
CONTAINER_MAX_FILES = 50
SOURCE_THREAD_KEY = "source_thread_id"
# An object of the API's JSON (a thread, a message, a run step, an item, a part…).
JSON = dict[str, Any]


@dataclass(frozen=True)
class Options:
    tool_calls: bool = True  # function_call + function_call_output pairs from run steps
    attachments: bool = True  # user attachments as input_file parts
    source_thread_id: bool = True  # add source_thread_id to the metadata when a slot is free


DEFAULT_OPTIONS = Options()


@dataclass(frozen=True)
class ConversionWarning:
    source: str  # the message, step, thread or assistant id
    text: str

    def __str__(self) -> str:
        return f"{self.source}: {self.text}"


@dataclass(frozen=True)
class Origin:
    """One source object, in the order the conversion placed it, and the items it became:
    `items[start:stop]` of the conversion (empty when nothing of it was sent)."""

    kind: str  # MESSAGE or STEP
    source: str  # the message or run step id
    start: int
    stop: int
    # For a step: the message its run created, which its items were placed just before (None
    # when the run created no message and the step's time placed it).
    message: str | None = None

    MESSAGE = "message"
    STEP = "step"


@dataclass
class Conversion:
    items: list[JSON]
    metadata: dict[str, str]
    warnings: list[ConversionWarning] = field(default_factory=list)
    skipped_messages: int = 0
    # Every source message and run step, in conversation order, with the items it became.
    origins: list[Origin] = field(default_factory=list)

    @property
    def batches(self) -> list[list[JSON]]:
        return batches(self.items)

    @property
    def write_calls(self) -> int:
        """One create (metadata only, so an ambiguous create can never copy messages) plus
        one call per batch of 20 items."""
        return 1 + len(self.batches)

    @property
    def verify_calls(self) -> int:
        return max(1, -(-len(self.items) // ITEMS_PER_VERIFY_PAGE))


def batches(
    items: Sequence[JSON], size: int = MAX_ITEMS_PER_CALL, max_bytes: int = MAX_BATCH_BYTES
) -> list[list[JSON]]:
    """Items split into API calls of at most `size` items and `max_bytes` of JSON, order kept;
    an item bigger than `max_bytes` goes alone (the API then says whether it takes it)."""
    chunks: list[list[JSON]] = []
    current: list[JSON] = []
    weight = 0
    for item in items:
        item_bytes = len(orjson.dumps(item))
        if current and (len(current) >= size or weight + item_bytes > max_bytes):
            chunks.append(current)
            current, weight = [], 0
        current.append(item)
        weight += item_bytes
    if current:
        chunks.append(current)
    return chunks


# --- messages ------------------------------------------------------------------------------------
def _input_image(source: dict[str, str], detail: str | None) -> JSON:
    return {"type": "input_image", **source, "detail": detail or "auto"}


def _user_part(block: JSON, message_id: str, warnings: list[ConversionWarning]) -> JSON | None:
    kind = block.get("type")
    if kind == "text":
        return {"type": "input_text", "text": block["text"]["value"]}
    if kind == "image_url":
        image = block["image_url"]
        return _input_image({"image_url": image["url"]}, image.get("detail"))
    if kind == "image_file":
        image = block["image_file"]
        return _input_image({"file_id": image["file_id"]}, image.get("detail"))
    warnings.append(
        ConversionWarning(message_id, f"content block of unknown type {kind!r} not sent")
    )
    return None


def _output_text(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": []}


def _assistant_part(block: JSON, message_id: str, warnings: list[ConversionWarning]) -> JSON | None:
    kind = block.get("type")
    if kind == "text":
        annotations = block["text"].get("annotations") or []
        if annotations:
            named = ", ".join(_describe_annotation(a) for a in annotations)
            warnings.append(
                ConversionWarning(
                    message_id,
                    f"{len(annotations)} annotation(s) ({named}) kept in the console only: "
                    "conversation items carry no annotations; the text and its placeholders "
                    "are unchanged",
                )
            )
        return _output_text(block["text"]["value"])
    if kind == "refusal":
        warnings.append(
            ConversionWarning(
                message_id, "refusal sent as assistant text: input items cannot mark a refusal"
            )
        )
        return _output_text(block["refusal"])
    if kind in ("image_file", "image_url"):
        target = block[kind].get("file_id") or block[kind].get("url")
        warnings.append(
            ConversionWarning(
                message_id,
                f"assistant {kind} {target} shown as a text marker: assistant items cannot "
                "carry images",
            )
        )
        return _output_text(f"[image: {target}]")
    warnings.append(
        ConversionWarning(message_id, f"content block of unknown type {kind!r} not sent")
    )
    return None


def _describe_annotation(annotation: JSON) -> str:
    """`file_citation file-abc`, `url_citation https://…`: what the annotation pointed at."""
    kind = annotation.get("type", "?")
    details = annotation.get(kind) or {}
    target = details.get("file_id") or details.get("url") or ""
    return f"{kind} {target}".strip()


def _attachment_parts(
    message: JSON, warnings: list[ConversionWarning], options: Options
) -> list[JSON]:
    parts = []
    for attachment in message.get("attachments") or []:
        file_id = attachment.get("file_id")
        tools = sorted({tool.get("type") for tool in attachment.get("tools") or []} - {None})
        if not file_id:  # Azure's alternative to a file: an asset in a data store
            source = (attachment.get("data_source") or {}).get("uri", "?")
            warnings.append(
                ConversionWarning(
                    message["id"],
                    f"attachment from the data source {source} not sent: conversation items "
                    "take uploaded files only; upload it as a file, or keep it in a vector store "
                    "for file_search",
                )
            )
            continue
        if message["role"] == "assistant":
            warnings.append(
                ConversionWarning(
                    message["id"],
                    f"attachment {file_id} shown as a text marker: assistant items carry only text",
                )
            )
            parts.append(_output_text(f"[attached file: {file_id}]"))
            continue
        if not options.attachments:
            warnings.append(
                ConversionWarning(
                    message["id"], f"attachment {file_id} not sent (attachments are off)"
                )
            )
            continue
        parts.append({"type": "input_file", "file_id": file_id})
        if "file_search" in tools:
            warnings.append(
                ConversionWarning(
                    message["id"],
                    f"attachment {file_id} was bound to file_search: vector stores do not move "
                    "with the conversation; pass them as file_search tools on each response",
                )
            )
    return parts


def message_item(
    message: JSON, warnings: list[ConversionWarning], options: Options = DEFAULT_OPTIONS
) -> JSON | None:
    """The one item a source message becomes, or None (with a warning) when nothing is left."""
    role = message["role"]
    convert = _assistant_part if role == "assistant" else _user_part
    parts = [
        part
        for block in message.get("content") or []
        if (part := convert(block, message["id"], warnings)) is not None
    ]
    parts += _attachment_parts(message, warnings, options)
    if not parts:
        warnings.append(ConversionWarning(message["id"], "message with no content skipped"))
        return None
    return {"type": "message", "role": role, "content": parts}


# --- run steps -----------------------------------------------------------------------------------
def _tool_call_pair(call: JSON, step_id: str, warnings: list[ConversionWarning]) -> list[JSON]:
    function = call.get("function") or {}
    name = function.get("name", "?")
    if function.get("output") is None:
        warnings.append(
            ConversionWarning(
                step_id,
                f"function call {call['id']} ({name}) not sent: it has no output, and an "
                "unanswered call breaks later responses on the conversation",
            )
        )
        return []
    if len(call["id"]) > CALL_ID_MAX_LENGTH:
        warnings.append(
            ConversionWarning(
                step_id, f"function call {call['id'][:20]}… not sent: call id over 64 chars"
            )
        )
        return []
    return [
        {
            "type": "function_call",
            "call_id": call["id"],
            "name": name,
            "arguments": function.get("arguments") or "",
        },
        {"type": "function_call_output", "call_id": call["id"], "output": function["output"]},
    ]


def _step_items(step: JSON, warnings: list[ConversionWarning], options: Options) -> list[JSON]:
    """The items a tool-calls step becomes: function calls with outputs as call/output pairs;
    a call of any other type (hosted, Azure's, unknown) stays in the console, with a warning
    (the tool table below says why for each)."""
    items: list[JSON] = []
    for call in (step.get("step_details") or {}).get("tool_calls") or []:
        kind = call.get("type")
        if kind != "function":
            rule = tool_rule(kind)
            warnings.append(
                ConversionWarning(
                    step["id"], f"{kind} call {call.get('id')} not sent: {rule.call_not_sent}"
                )
            )
        elif not options.tool_calls:
            warnings.append(
                ConversionWarning(
                    step["id"], f"function call {call['id']} not sent (tool calls are off)"
                )
            )
        else:
            items += _tool_call_pair(call, step["id"], warnings)
    return items


# --- the thread ----------------------------------------------------------------------------------
def conversation_metadata(
    thread: JSON, options: Options = DEFAULT_OPTIONS
) -> tuple[dict[str, str], list[ConversionWarning]]:
    """Thread metadata as conversation metadata, validated against the API's limits.

    The rule, deterministic whatever order the keys were stored in: keys are taken in sorted
    order; a key over 64 characters or a value that is not a string of at most 512 characters is
    left out; past 16 keys the rest are left out. Each omission is a warning; the thread's full
    metadata stays in the console. `source_thread_id` is added when a slot is free.
    """
    warnings: list[ConversionWarning] = []
    metadata: dict[str, str] = {}
    source = thread.get("metadata") or {}
    for key in sorted(source):
        value = source[key]
        if len(key) > METADATA_MAX_KEY_LENGTH:
            reason = f"its key is over {METADATA_MAX_KEY_LENGTH} characters"
        elif not isinstance(value, str):
            reason = "its value is not a string"
        elif len(value) > METADATA_MAX_VALUE_LENGTH:
            reason = f"its value is {len(value)} characters (limit {METADATA_MAX_VALUE_LENGTH})"
        elif len(metadata) >= METADATA_MAX_KEYS:
            reason = f"conversations hold at most {METADATA_MAX_KEYS} keys"
        else:
            metadata[key] = value
            continue
        shown = key if len(key) <= 40 else key[:40] + "…"
        warnings.append(
            ConversionWarning(thread["id"], f"metadata key {shown!r} not carried over: {reason}")
        )
    if options.source_thread_id and SOURCE_THREAD_KEY not in metadata:
        if len(metadata) < METADATA_MAX_KEYS:
            metadata[SOURCE_THREAD_KEY] = thread["id"]
        else:
            warnings.append(
                ConversionWarning(
                    thread["id"],
                    f"no free metadata slot for {SOURCE_THREAD_KEY}: the mapping is in the "
                    "console only",
                )
            )
    return metadata, warnings


def _ordered(objects: Sequence[JSON]) -> list[JSON]:
    """By created_at, ties broken by the order the source listed them in."""
    indexed = sorted(enumerate(objects), key=lambda pair: (pair[1].get("created_at") or 0, pair[0]))
    return [obj for _, obj in indexed]


def export_warnings(errors: Sequence[JSON]) -> list[ConversionWarning]:
    """The errors an exporter recorded about a thread (the v1 export's `errors[]`), as warnings:
    what it could not export is missing from the thread, and staff must see that."""
    warnings = []
    for error in errors:
        kind, source = error.get("object"), error.get("id") or "export"
        reason = error.get("error") or "unknown error"
        if error.get("detail"):
            reason = f"{reason}: {error['detail']}"
        if kind == "run_steps":
            text = f"its steps were not exported ({reason}), so its tool calls are missing"
        elif kind == "file":
            text = (
                f"the exporter could not read this file ({reason}): its filename, purpose and "
                "size are unknown; messages still name it by id"
            )
        elif kind == "thread":
            text = (
                f"the exporter reported an error reading the thread ({reason}): its messages "
                "or runs may be incomplete"
            )
        else:
            text = f"the exporter reported an error about this {kind or 'object'} ({reason})"
        warnings.append(ConversionWarning(source, text))
    return warnings


def convert_thread(
    thread: JSON,
    messages: Sequence[JSON],
    run_steps: Sequence[JSON] = (),
    options: Options = DEFAULT_OPTIONS,
    export_errors: Sequence[JSON] = (),
) -> Conversion:
    """A mirrored thread as the ordered items a new conversation receives.

    One message → one item, in created_at order. A run's function-call pairs go just before the
    first message that run created; calls of a run that created no message go where their step's
    time puts them. Every message and step is recorded in `origins`, with the items it became
    (none for a skipped message or a step whose calls cannot be sent). `export_errors`: what
    the export the thread came from could not hold (warnings; they change no item).
    """
    metadata, warnings = conversation_metadata(thread, options)
    calls_by_run: dict[str | None, list[tuple[JSON, list[JSON]]]] = {}
    for step in _ordered(run_steps):
        step_items = _step_items(step, warnings, options)
        calls_by_run.setdefault(step.get("run_id"), []).append((step, step_items))
    message_runs = {m.get("run_id") for m in messages if m.get("run_id")}
    unplaced = sorted(
        (pair for run, pairs in calls_by_run.items() if run not in message_runs for pair in pairs),
        key=lambda pair: pair[0].get("created_at") or 0,
    )
    items: list[JSON] = []
    origins: list[Origin] = []
    skipped = 0

    def place(kind: str, source: str, new_items: list[JSON], message: str | None = None) -> None:
        origins.append(Origin(kind, source, len(items), len(items) + len(new_items), message))
        items.extend(new_items)

    for message in _ordered(messages):
        while unplaced and (unplaced[0][0].get("created_at") or 0) < (
            message.get("created_at") or 0
        ):
            step, step_items = unplaced.pop(0)
            place(Origin.STEP, step["id"], step_items)
        for step, step_items in calls_by_run.pop(message.get("run_id"), []):
            place(Origin.STEP, step["id"], step_items, message["id"])
        item = message_item(message, warnings, options)
        if item is None:
            skipped += 1
        place(Origin.MESSAGE, message["id"], [] if item is None else [item])
    for step, step_items in unplaced:
        place(Origin.STEP, step["id"], step_items)
    warnings.extend(export_warnings(export_errors))
    return Conversion(
        items=items,
        metadata=metadata,
        warnings=warnings,
        skipped_messages=skipped,
        origins=origins,
    )


# --- the assistant -------------------------------------------------------------------------------
RANKERS = {"auto": "auto", "default_2024_08_21": "default-2024-11-15"}


def _resource_ids(resources: JSON | None, tool: str, key: str) -> list[str]:
    return list(((resources or {}).get(tool) or {}).get(key) or [])


def _function_tool(tool: JSON) -> JSON:
    function = tool.get("function") or {}
    config: JSON = {
        "type": "function",
        "name": function.get("name"),
        "parameters": function.get("parameters"),
        # Responses makes functions strict by default; Assistants did not. Say which.
        "strict": function.get("strict") is True,
    }
    if function.get("description"):
        config["description"] = function["description"]
    return config


def _file_search_tool(
    tool: JSON, vector_store_ids: list[str], source: str, warnings: list[ConversionWarning]
) -> JSON | None:
    if not vector_store_ids:
        warnings.append(
            ConversionWarning(source, "file_search left out: no vector store is attached to it")
        )
        return None
    options = tool.get("file_search") or {}
    config: JSON = {"type": "file_search", "vector_store_ids": vector_store_ids}
    if options.get("max_num_results") is not None:
        config["max_num_results"] = options["max_num_results"]
    ranking = options.get("ranking_options")
    if ranking:
        ranker = ranking.get("ranker", "auto")
        translated = RANKERS.get(ranker, "auto")
        if translated != ranker:
            warnings.append(
                ConversionWarning(
                    source,
                    f"file_search ranker {ranker!r} does not exist in Responses; using "
                    f"{translated!r}",
                )
            )
        config["ranking_options"] = {"ranker": translated}
        if ranking.get("score_threshold") is not None:
            config["ranking_options"]["score_threshold"] = ranking["score_threshold"]
    return config


def _code_interpreter_tool(
    file_ids: list[str], source: str, warnings: list[ConversionWarning]
) -> JSON:
    if len(file_ids) > CONTAINER_MAX_FILES:
        warnings.append(
            ConversionWarning(
                source,
                f"code_interpreter has {len(file_ids)} files; a container takes "
                f"{CONTAINER_MAX_FILES}, so the first {CONTAINER_MAX_FILES} are used",
            )
        )
    return {
        "type": "code_interpreter",
        "container": {"type": "auto", "file_ids": file_ids[:CONTAINER_MAX_FILES]},
    }


def _text_format(response_format: JSON | str | None) -> JSON | None:
    if response_format is None or isinstance(response_format, str):  # "auto"
        return None
    kind = response_format.get("type")
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind == "json_schema":
        schema = response_format.get("json_schema") or {}
        flat: JSON = {
            "type": "json_schema",
            "name": schema.get("name"),
            "schema": schema.get("schema"),
        }
        for key in ("description", "strict"):
            if schema.get(key) is not None:
                flat[key] = schema[key]
        return flat
    return None


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


@dataclass(frozen=True)
class ToolContext:
    """What a tool's Responses configuration may draw on: the resources of the assistant and of
    the thread, and where its warnings go."""

    source: str  # the assistant id
    assistant_resources: JSON
    thread: JSON | None
    warnings: list[ConversionWarning]

    @property
    def thread_resources(self) -> JSON:
        return (self.thread or {}).get("tool_resources") or {}

    def warn(self, text: str) -> None:
        self.warnings.append(ConversionWarning(self.source, text))


def _function_config(tool: JSON, context: ToolContext) -> JSON | None:
    return _function_tool(tool)


def _file_search_config(tool: JSON, context: ToolContext) -> JSON | None:
    thread_stores = _resource_ids(context.thread_resources, "file_search", "vector_store_ids")
    stores = _unique(
        _resource_ids(context.assistant_resources, "file_search", "vector_store_ids")
        + thread_stores
    )
    if context.thread and thread_stores:
        context.warnings.append(
            ConversionWarning(
                context.thread["id"],
                "thread vector stores expire 7 days after last use by default; check they "
                "still exist",
            )
        )
    return _file_search_tool(tool, stores, context.source, context.warnings)


def _code_interpreter_config(tool: JSON, context: ToolContext) -> JSON | None:
    files = _unique(
        _resource_ids(context.assistant_resources, "code_interpreter", "file_ids")
        + _resource_ids(context.thread_resources, "code_interpreter", "file_ids")
    )
    return _code_interpreter_tool(files, context.source, context.warnings)


MCP_APPROVALS = ("always", "never")


def _mcp_config(tool: JSON, context: ToolContext) -> JSON | None:
    """Foundry's MCP tool is Responses' MCP tool; its approval setting sits in the resources."""
    label = tool.get("server_label")
    if not label or not tool.get("server_url"):
        context.warn(f"MCP tool {label or '?'} left out: it names no server_url")
        return None
    config: JSON = {"type": "mcp", "server_label": label, "server_url": tool["server_url"]}
    if tool.get("allowed_tools"):
        config["allowed_tools"] = list(tool["allowed_tools"])
    resources = context.assistant_resources.get("mcp") or []
    resource = next(
        (r for r in resources if isinstance(r, dict) and r.get("server_label") == label), {}
    )
    approval = resource.get("require_approval")
    if approval in MCP_APPROVALS:
        config["require_approval"] = approval
    elif approval is not None:
        context.warn(f"MCP server {label}: require_approval {approval!r} left out")
    if resource.get("headers"):
        context.warn(
            f"MCP server {label}: its headers are not copied (they usually carry credentials); "
            "pass them as `headers` on each response"
        )
    return config


@dataclass(frozen=True)
class ToolRule:
    """What becomes of one tool type: in an assistant's tools (`config` builds its Responses
    tool, or None: left out because `instead`) and as a call in a run step (only `function`
    calls travel; `call_not_sent` says why the others stay in the console)."""

    config: Callable[[JSON, ToolContext], JSON | None] | None = None
    instead: str = ""
    call_not_sent: str = "Conversations has no client-made item of this type"

    def left_out(self, tool: JSON) -> str:
        kind = tool.get("type")
        named = _tool_name(tool)
        return f"{kind} tool{f' {named}' if named else ''} left out: {self.instead}"


def _tool_name(tool: JSON) -> str:
    """The name, index or connection a tool definition carries, to tell two apart."""
    body = _object(tool.get(tool.get("type") or ""))
    for key in ("name", "id", "deep_research_model"):
        if isinstance(body.get(key), str):
            return str(body[key])
    name = _object(body.get("function")).get("name")
    return name if isinstance(name, str) else ""


def _object(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


HOSTED_CALL = "Conversations has no client-made {kind} item; the call stays in the console"
# One rule per tool type; any type not here gets UNKNOWN_TOOL. Hosted tools run inside the API:
# their calls were the service's own work and cannot be replayed as conversation items.
TOOL_RULES: dict[str, ToolRule] = {
    "function": ToolRule(_function_config),
    "file_search": ToolRule(
        _file_search_config, call_not_sent=HOSTED_CALL.format(kind="file_search")
    ),
    "code_interpreter": ToolRule(
        _code_interpreter_config, call_not_sent=HOSTED_CALL.format(kind="code_interpreter")
    ),
    "mcp": ToolRule(
        _mcp_config,
        call_not_sent="an MCP call ran on Azure's side; the call and its output stay in the "
        "console",
    ),
    "bing_grounding": ToolRule(
        instead="Responses has no Grounding with Bing Search; web_search is the nearest hosted "
        "tool",
        call_not_sent="a Bing search ran on Azure's side; the query stays in the console "
        "(its citations are kept with the reply)",
    ),
    "bing_custom_search": ToolRule(
        instead="Responses has no Bing Custom Search; web_search with allowed domains is the "
        "nearest hosted tool",
        call_not_sent="a Bing Custom Search ran on Azure's side; the query stays in the console",
    ),
    "azure_ai_search": ToolRule(
        instead="Responses cannot query an Azure AI Search index; call the index from a function "
        "tool, or move its documents into a vector store for file_search",
        call_not_sent="an Azure AI Search query ran on Azure's side; it stays in the console",
    ),
    "openapi": ToolRule(
        instead="Responses has no OpenAPI tool; declare its operations as function tools that "
        "your application calls",
        call_not_sent="an OpenAPI call ran on Azure's side; the call and its output stay in the "
        "console",
    ),
    "azure_function": ToolRule(
        instead="Responses does not call Azure Functions; declare the function as a function "
        "tool and call it from your application",
        call_not_sent="an Azure Function call ran through Azure's queues; the call and its "
        "output stay in the console",
    ),
    "sharepoint_grounding": ToolRule(
        instead="Responses has no SharePoint grounding",
        call_not_sent="a SharePoint search ran on Azure's side; it stays in the console",
    ),
    "fabric_dataagent": ToolRule(
        instead="Responses has no Microsoft Fabric data agent",
        call_not_sent="a Fabric data agent query ran on Azure's side; it stays in the console",
    ),
    "connected_agent": ToolRule(
        instead="Responses has no connected agents; run that agent from your application with "
        "its own configuration",
        call_not_sent="a connected agent answered on Azure's side (in a thread of its own); "
        "its answer stays in the console",
    ),
    "deep_research": ToolRule(
        instead="deep research is a model in Responses (o3-deep-research with web_search), not "
        "a tool",
        call_not_sent="deep research ran on Azure's side; its report stays in the console",
    ),
    "browser_automation": ToolRule(
        instead="Responses has no Browser Automation; computer_use (run by your application) "
        "is the nearest",
        call_not_sent="a browser session ran on Azure's side; its steps stay in the console",
    ),
}
UNKNOWN_TOOL = ToolRule(
    instead="a tool type the console does not know",
    call_not_sent="a call of a tool type the console does not know; it stays in the console",
)


def tool_rule(kind: str | None) -> ToolRule:
    return TOOL_RULES.get(kind or "", UNKNOWN_TOOL)


def responses_config(
    assistant: JSON, thread: JSON | None = None
) -> tuple[JSON, list[ConversionWarning]]:
    """(configuration for responses.create, warnings) for an assistant, optionally merged with
    one thread's tool resources."""
    source = assistant["id"]
    warnings: list[ConversionWarning] = []
    config: JSON = {"model": assistant.get("model")}
    if assistant.get("instructions"):
        config["instructions"] = assistant["instructions"]
    context = ToolContext(source, assistant.get("tool_resources") or {}, thread, warnings)
    tools: list[JSON] = []
    for tool in assistant.get("tools") or []:
        rule = tool_rule(tool.get("type"))
        if rule.config is None:
            context.warn(rule.left_out(tool))
        elif (built := rule.config(tool, context)) is not None:
            tools.append(built)
    if tools:
        config["tools"] = tools
    text_format = _text_format(assistant.get("response_format"))
    if text_format:
        config["text"] = {"format": text_format}
    elif assistant.get("response_format") not in (None, "auto"):
        warnings.append(
            ConversionWarning(source, f"response_format {assistant['response_format']!r} left out")
        )
    if assistant.get("reasoning_effort"):
        config["reasoning"] = {"effort": assistant["reasoning_effort"]}
    for key in ("temperature", "top_p"):
        if assistant.get(key) is not None:
            config[key] = assistant[key]
    if assistant.get("metadata"):
        metadata, metadata_warnings = conversation_metadata(
            {"id": source, "metadata": assistant["metadata"]}, Options(source_thread_id=False)
        )
        config["metadata"] = metadata
        warnings += metadata_warnings
    for key in ("name", "description"):
        if assistant.get(key):
            warnings.append(
                ConversionWarning(
                    source, f"{key} kept in the console only: Responses has no place for it"
                )
            )
    return config, warnings


# --- comparing with what the server holds --------------------------------------------------------
def _part_fingerprint(part: JSON) -> tuple[Any, Any]:
    kind = part.get("type")
    value = part.get("text") or part.get("file_id") or part.get("image_url") or part.get("file_url")
    return kind, value


def item_fingerprint(item: JSON) -> tuple[Any, ...]:
    """What must match between an item we sent and the item the server lists back (the server
    adds ids and statuses, and spells string content as a list)."""
    kind = item.get("type", "message")
    if kind == "message":
        content = item.get("content")
        if isinstance(content, str):
            part = "output_text" if item.get("role") == "assistant" else "input_text"
            content = [{"type": part, "text": content}]
        return kind, item.get("role"), tuple(_part_fingerprint(p) for p in content or [])
    if kind == "function_call":
        return kind, item.get("call_id"), item.get("name"), item.get("arguments")
    if kind == "function_call_output":
        return kind, item.get("call_id"), item.get("output")
    return (kind,)

"""A deterministic generator of realistic Assistants data, in the API's own wire shapes.

The same seed always gives the same assistants and threads, byte for byte. Every content kind the
conversion rules name appears: annotated text, several text blocks, images by URL and by file with
and without `detail`, refusals, attachments bound to each tool, assistant images, empty messages,
unicode (emoji, RTL, combining marks), hostile HTML/JS text, long threads, and runs whose steps
carry function calls with and without outputs, code_interpreter and file_search calls.

A thread bundle is the export format: {"thread", "messages", "runs", "run_steps"}.
"""

import json
import random
import string
from collections.abc import Iterator, Sequence
from typing import Any

JSON = dict[str, Any]

BASE_TIME = 1_717_000_000
MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini"]

USER_LINES = [
    "Can you summarise the attached report for the board?",
    "Why was my card declined yesterday? Order #48213.",
    "Wie kann ich mein Passwort zurücksetzen?",
    "¿Cuál es el horario de atención al cliente?",
    "我的订单什么时候发货？",
    "مرحبا، أريد إلغاء اشتراكي من فضلك",
    "שלום, האם אפשר לשנות את כתובת המשלוח?",
    "Thanks! 🎉👍🏽 That fixed it. 👨‍👩‍👧‍👦",
    "Zalgo t̷e̸x̵t̶ and combining marks: é vs é",
    "<script>alert('xss')</script> is in my profile name, is that a problem?",
    'My bio says <img src=x onerror="alert(1)"> and {{ request.user }} {% debug %}',
    "Here is a table:\n| a | b |\n|---|---|\n| 1 | 2 |",
    "Line one\r\nLine two\ttabbed\u00a0nbsp\u200bzero-width",
]

ASSISTANT_LINES = [
    "Here is a summary of the report.",
    "Your card was declined because the billing address did not match.",
    "Sie können Ihr Passwort unter Einstellungen → Sicherheit zurücksetzen.",
    "Nuestro horario es de 9:00 a 18:00, de lunes a viernes.",
    "您的订单将在48小时内发货。",
    "تم إلغاء اشتراكك بنجاح.",
    "Sure — I've escaped that for you: &lt;script&gt; stays text. `{{ x }}`",
    "```python\nprint('hello')\n```",
]

FUNCTIONS = [
    ("lookup_order", {"order_id": "48213"}),
    ("get_weather", {"city": "Zürich", "unit": "c"}),
    ("refund_payment", {"payment_id": "pay_91", "amount": 12.5}),
]


class IdMaker:
    """Ids shaped like the API's (prefix + 24 alphanumerics), deterministic per seed."""

    ALPHABET = string.ascii_letters + string.digits

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def __call__(self, prefix: str) -> str:
        return prefix + "".join(self.rng.choices(self.ALPHABET, k=24))


def generate_assistants(rng: random.Random, ids: IdMaker, count: int = 4) -> list[JSON]:
    assistants = []
    for index in range(count):
        tools: list[JSON] = [{"type": "code_interpreter"}] if index % 2 == 0 else []
        tools.append(
            {
                "type": "file_search",
                "file_search": {
                    "max_num_results": 20,
                    "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.2},
                },
            }
        )
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": FUNCTIONS[index % len(FUNCTIONS)][0],
                    "description": "Looks something up for the customer.",
                    "parameters": {
                        "type": "object",
                        "properties": {"order_id": {"type": "string"}},
                        "required": ["order_id"],
                    },
                    "strict": index % 2 == 1,
                },
            }
        )
        response_format = [
            "auto",
            {"type": "text"},
            {"type": "json_object"},
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "answer",
                    "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
                    "strict": True,
                },
            },
        ][index % 4]
        assistants.append(
            {
                "id": ids("asst_"),
                "object": "assistant",
                "created_at": BASE_TIME + index,
                "name": ["Support bot", "Billing helper", "Data analyst", "Übersetzer 🌍"][
                    index % 4
                ],
                "description": None,
                "model": MODELS[index % len(MODELS)],
                "instructions": "You are a helpful support agent. Be brief.",
                "tools": tools,
                "tool_resources": {
                    "code_interpreter": {"file_ids": [ids("file-")]},
                    "file_search": {"vector_store_ids": [ids("vs_")]},
                },
                "metadata": {"team": "support"},
                "temperature": 1.0,
                "top_p": 1.0,
                "response_format": response_format,
                "reasoning_effort": "medium" if index == 3 else None,
            }
        )
    return assistants


def _text_block(value: str, annotations: Sequence[JSON] = ()) -> JSON:
    return {"type": "text", "text": {"value": value, "annotations": list(annotations)}}


def _annotated_text(rng: random.Random, ids: IdMaker) -> JSON:
    placeholder = f"【{rng.randint(1, 20)}:{rng.randint(0, 3)}†source】"
    path = "sandbox:/mnt/data/report.csv"
    value = f"According to the policy{placeholder}, you can download it here: {path}"
    start = value.index(placeholder)
    path_start = value.index(path)
    return _text_block(
        value,
        [
            {
                "type": "file_citation",
                "text": placeholder,
                "start_index": start,
                "end_index": start + len(placeholder),
                "file_citation": {"file_id": ids("file-")},
            },
            {
                "type": "file_path",
                "text": path,
                "start_index": path_start,
                "end_index": path_start + len(path),
                "file_path": {"file_id": ids("file-")},
            },
        ],
    )


def _user_content(rng: random.Random, ids: IdMaker) -> list[JSON]:
    roll = rng.random()
    text = _text_block(rng.choice(USER_LINES))
    if roll < 0.08:
        detail = rng.choice([None, "low", "high", "auto"])
        image = {"url": f"https://example.com/img/{rng.randint(1, 999)}.png"}
        if detail:
            image["detail"] = detail
        return [text, {"type": "image_url", "image_url": image}]
    if roll < 0.14:
        image = {"file_id": ids("file-")}
        if rng.random() < 0.5:
            image["detail"] = rng.choice(["low", "high"])
        return [{"type": "image_file", "image_file": image}, text]
    if roll < 0.18:
        return [text, _text_block(rng.choice(USER_LINES))]
    if roll < 0.19:
        return [_text_block("x" * 30_000)]
    return [text]


def _assistant_content(rng: random.Random, ids: IdMaker) -> list[JSON]:
    roll = rng.random()
    if roll < 0.10:
        return [_annotated_text(rng, ids)]
    if roll < 0.13:
        return [{"type": "refusal", "refusal": "I can't help with that request."}]
    if roll < 0.16:
        return [
            _text_block("Here is the chart you asked for:"),
            {"type": "image_file", "image_file": {"file_id": ids("file-")}},
        ]
    if roll < 0.20:
        return [_text_block(rng.choice(ASSISTANT_LINES)), _text_block("Anything else?")]
    return [_text_block(rng.choice(ASSISTANT_LINES))]


def _attachments(rng: random.Random, ids: IdMaker, role: str) -> list[JSON]:
    if rng.random() > 0.06:
        return []
    tools = rng.choice(
        [
            [{"type": "file_search"}],
            [{"type": "code_interpreter"}],
            [{"type": "code_interpreter"}, {"type": "file_search"}],
        ]
    )
    return [{"file_id": ids("file-"), "tools": tools}]


def _message(
    ids: IdMaker,
    thread_id: str,
    role: str,
    created_at: int,
    content: list[JSON],
    attachments: list[JSON],
    assistant_id: str | None,
    run_id: str | None,
) -> JSON:
    return {
        "id": ids("msg_"),
        "object": "thread.message",
        "created_at": created_at,
        "thread_id": thread_id,
        "status": "completed",
        "incomplete_details": None,
        "completed_at": created_at,
        "incomplete_at": None,
        "role": role,
        "content": content,
        "assistant_id": assistant_id,
        "run_id": run_id,
        "attachments": attachments,
        "metadata": {},
    }


def _run(ids: IdMaker, thread_id: str, assistant: JSON, created_at: int) -> JSON:
    return {
        "id": ids("run_"),
        "object": "thread.run",
        "created_at": created_at,
        "assistant_id": assistant["id"],
        "thread_id": thread_id,
        "status": "completed",
        "started_at": created_at,
        "expires_at": None,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": created_at + 1,
        "required_action": None,
        "last_error": None,
        "model": assistant["model"],
        "instructions": assistant["instructions"],
        "tools": assistant["tools"],
        "metadata": {},
        "incomplete_details": None,
        "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
        "temperature": 1.0,
        "top_p": 1.0,
        "max_prompt_tokens": None,
        "max_completion_tokens": None,
        "truncation_strategy": {"type": "auto", "last_messages": None},
        "response_format": "auto",
        "tool_choice": "auto",
        "parallel_tool_calls": True,
    }


def _tool_calls(rng: random.Random, ids: IdMaker) -> list[JSON]:
    calls = []
    roll = rng.random()
    if roll < 0.6:
        name, args = rng.choice(FUNCTIONS)
        output = json.dumps({"status": "ok", "value": rng.randint(1, 100)}) if roll < 0.5 else None
        calls.append(
            {
                "id": ids("call_"),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args), "output": output},
            }
        )
    elif roll < 0.8:
        calls.append(
            {
                "id": ids("call_"),
                "type": "code_interpreter",
                "code_interpreter": {
                    "input": "import pandas as pd\ndf = pd.read_csv('x.csv')\ndf.describe()",
                    "outputs": [{"type": "logs", "logs": "count 10\nmean 4.5"}],
                },
            }
        )
    else:
        calls.append(
            {
                "id": ids("call_"),
                "type": "file_search",
                "file_search": {
                    "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.0},
                    "results": [{"file_id": ids("file-"), "file_name": "policy.pdf", "score": 0.8}],
                },
            }
        )
    return calls


def _step(ids: IdMaker, run: JSON, created_at: int, tool_calls: list[JSON]) -> JSON:
    return {
        "id": ids("step_"),
        "object": "thread.run.step",
        "created_at": created_at,
        "assistant_id": run["assistant_id"],
        "thread_id": run["thread_id"],
        "run_id": run["id"],
        "type": "tool_calls",
        "status": "completed",
        "step_details": {"type": "tool_calls", "tool_calls": tool_calls},
        "last_error": None,
        "expired_at": None,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": created_at,
        "metadata": {},
        "usage": None,
    }


def _message_count(rng: random.Random, index: int) -> int:
    if index % 97 == 3:
        return rng.randint(200, 320)  # a few very long threads
    if index % 50 == 7:
        return 0  # empty threads exist
    return rng.choice([1, 2, 4, 6, 8, 12, 19, 20, 21, 25, 30, 40])


def generate_thread(
    rng: random.Random,
    ids: IdMaker,
    assistants: list[JSON],
    index: int,
    message_count: int | None = None,
) -> JSON:
    """One thread bundle in the export format."""
    thread_id = ids("thread_")
    created = BASE_TIME + index * 600
    metadata = {"customer": f"cust_{index:06d}", "channel": rng.choice(["web", "ios", "android"])}
    if index % 13 == 5:
        metadata["note"] = "VIP — 日本語 ✓"
    thread: JSON = {
        "id": thread_id,
        "object": "thread",
        "created_at": created,
        "metadata": metadata,
        "tool_resources": {"code_interpreter": {"file_ids": []}, "file_search": None}
        if index % 3
        else {"file_search": {"vector_store_ids": [ids("vs_")]}},
    }
    count = _message_count(rng, index) if message_count is None else message_count
    assistant = assistants[index % len(assistants)]
    messages: list[JSON] = []
    runs: list[JSON] = []
    steps: list[JSON] = []
    clock = created
    role = "user"
    while len(messages) < count:
        if role == "user":
            # Now and then a message with no content at all.
            content = [] if rng.random() < 0.04 else _user_content(rng, ids)
            messages.append(
                _message(
                    ids,
                    thread_id,
                    "user",
                    clock,
                    content,
                    _attachments(rng, ids, "user"),
                    None,
                    None,
                )
            )
            role = "assistant"
        else:
            run = _run(ids, thread_id, assistant, clock)
            runs.append(run)
            if rng.random() < 0.3:
                steps.append(_step(ids, run, clock, _tool_calls(rng, ids)))
            # Same-second replies are common: created_at ties are broken by list order.
            messages.append(
                _message(
                    ids,
                    thread_id,
                    "assistant",
                    clock,
                    _assistant_content(rng, ids),
                    [],
                    assistant["id"],
                    run["id"],
                )
            )
            role = "user"
        clock += rng.choice([0, 1, 5, 30])
    return {"thread": thread, "messages": messages, "runs": runs, "run_steps": steps}


def generate_dataset(
    seed: int = 1, thread_count: int = 50, assistant_count: int = 4
) -> tuple[list[JSON], Iterator[JSON]]:
    """(assistants, iterator of thread bundles): lazily, so a large export stays flat in memory."""
    rng = random.Random(seed)
    ids = IdMaker(rng)
    assistants = generate_assistants(rng, ids, assistant_count)

    def bundles() -> Iterator[JSON]:
        for index in range(thread_count):
            yield generate_thread(rng, ids, assistants, index)

    return assistants, bundles()


def function_call(rng: random.Random, ids: IdMaker) -> JSON:
    """A function call that was answered: the kind of tool call that travels as items."""
    name, args = rng.choice(FUNCTIONS)
    return {
        "id": ids("call_"),
        "type": "function",
        "function": {
            "name": name,
            "arguments": json.dumps(args),
            "output": json.dumps({"status": "ok", "value": rng.randint(1, 100)}),
        },
    }


def generate_turn(
    rng: random.Random,
    ids: IdMaker,
    thread_id: str,
    assistant: JSON,
    created_at: int,
    tool_calls: list[JSON] | None = None,
) -> JSON:
    """One exchange a live thread receives, in the export format: a user message, the run that
    answered it, a step with `tool_calls` (when given) and the assistant's reply, all at
    `created_at` (the reply one second later)."""
    user = _message(ids, thread_id, "user", created_at, _user_content(rng, ids), [], None, None)
    run = _run(ids, thread_id, assistant, created_at)
    steps = [_step(ids, run, created_at, tool_calls)] if tool_calls else []
    reply = _message(
        ids,
        thread_id,
        "assistant",
        created_at + 1,
        _assistant_content(rng, ids),
        [],
        assistant["id"],
        run["id"],
    )
    return {"messages": [user, reply], "runs": [run], "run_steps": steps}

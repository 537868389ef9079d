"""The thread page: every source message and run step beside the items it became, a page of rows
at a time, with the warnings, the conversations and the history. Plain functions over one thread;
the admin adds only what depends on the request (buttons, permissions).

The alignment is the conversion's own (`Conversion.origins`): the page never guesses which item
came from where.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.paginator import Page, Paginator

from migrations_app.conversion import Conversion, Options, Origin, convert_thread, responses_config
from migrations_app.models import Attempt, Conversation, Message, RunStep, Thread
from migrations_app.preview import conversion_options, export_errors

ROWS_PER_PAGE = 50
HISTORY_ROWS = 100


@dataclass
class Item:
    position: int  # 1-based, in the conversation
    data: dict
    committed: bool  # the live conversation holds it already


@dataclass
class Part:
    """One source object (a message, or a run step with tool calls) and what it became."""

    kind: str  # Origin.MESSAGE or Origin.STEP
    source_id: str
    source: Message | RunStep
    items: list[Item]
    warnings: list[str]

    @property
    def is_message(self) -> bool:
        return self.kind == Origin.MESSAGE

    @property
    def skipped(self) -> bool:
        return not self.items


@dataclass
class Row:
    """A source message with the run steps placed just before it (their tool calls came from
    the run that created it), or a step of a run that created no message."""

    number: int
    parts: list[Part] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"row-{self.number}"


@dataclass
class WarningLink:
    text: str
    row: Row | None  # None for the thread's own (metadata) warnings
    page: int | None


def compare_rows(
    conversion: Conversion,
    messages: list[Message],
    steps: list[RunStep],
    items_committed: int = 0,
) -> list[Row]:
    """The conversion's origins as rows: each message closes a row that holds it and the steps
    placed for it; a step placed by its time alone is a row of its own."""
    by_id: dict[str, Message | RunStep] = {m.message_id: m for m in messages}
    by_id.update({s.step_id: s for s in steps})
    warnings: dict[str, list[str]] = {}
    for warning in conversion.warnings:
        warnings.setdefault(warning.source, []).append(warning.text)
    rows: list[Row] = []
    waiting: list[Part] = []
    for origin in conversion.origins:
        part = Part(
            kind=origin.kind,
            source_id=origin.source,
            source=by_id[origin.source],
            items=[
                Item(index + 1, conversion.items[index], index < items_committed)
                for index in range(origin.start, origin.stop)
            ],
            warnings=warnings.get(origin.source, []),
        )
        if origin.kind == Origin.STEP and origin.message is not None:
            waiting.append(part)  # its message comes next
            continue
        rows.append(Row(len(rows) + 1, [*waiting, part]))
        waiting = []
    if waiting:  # not reached: a step placed for a message is followed by it
        rows.append(Row(len(rows) + 1, waiting))
    return rows


def warning_links(conversion: Conversion, rows: list[Row], per_page: int) -> list[WarningLink]:
    """Every warning, with the row (and page) of the message or step it is about."""
    row_of = {part.source_id: row for row in rows for part in row.parts}
    for row in rows:  # an exporter's warning about a run: the row of the message it created
        for part in row.parts:
            run_id = part.source.data.get("run_id") if part.is_message else None
            if run_id:
                row_of.setdefault(run_id, row)
    links = []
    for warning in conversion.warnings:
        found = row_of.get(warning.source)
        page = (found.number - 1) // per_page + 1 if found else None
        links.append(WarningLink(str(warning), found, page))
    return links


def _options(conversations: list[Conversation]) -> Options:
    """The options the live conversation was built with (a resumed upload sends exactly those
    items), else the current settings; as the upload chooses them."""
    live = next((c for c in conversations if c.replaced_at is None), None)
    if live is not None and live.options:
        return Options(**live.options)
    return conversion_options()


def thread_page(thread: Thread, page_number: Any = 1, per_page: int = ROWS_PER_PAGE) -> dict:
    """Everything the thread page shows, for one page of compare rows."""
    conversations = list(thread.conversations.order_by("-created_at"))
    context: dict[str, Any] = {
        "thread": thread,
        "conversations": conversations,
        "history": list(thread.history.select_related("actor")[:HISTORY_ROWS]),
        # Every sync that ran (delta re-sync): when, and what it added.
        "syncs": list(
            thread.history.filter(action=Attempt.Action.SYNC).exclude(
                outcome=Attempt.Outcome.QUEUED
            )[:HISTORY_ROWS]
        ),
        "preview": None,
        "preview_error": None,
        "rows": [],
        "page": None,
        "page_range": [],
        "warning_links": [],
        "config": None,
    }
    if thread.assistant is not None:
        context["config"] = responses_config(thread.assistant.data, thread.data)
    if thread.data is None:
        context["preview_error"] = f"{thread.thread_id} has not been fetched from the source yet"
        return context
    messages = list(thread.messages.order_by("position"))
    steps = list(thread.run_steps.order_by("created_at", "pk"))
    conversion = convert_thread(
        thread.data,
        [m.data for m in messages],
        [s.data for s in steps],
        _options(conversations),
        export_errors=export_errors(thread),
    )
    rows = compare_rows(conversion, messages, steps, thread.items_committed)
    paginator = Paginator(rows, per_page)
    page: Page = paginator.get_page(page_number)
    context.update(
        preview=conversion,
        rows=page.object_list,
        page=page,
        page_range=list(paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1))
        if paginator.num_pages > 1
        else [],
        warning_links=warning_links(conversion, rows, per_page),
    )
    return context

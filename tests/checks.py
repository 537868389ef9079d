"""Assertions against the sandbox's own state: what the API really holds."""

from migrations_app.conversion import item_fingerprint
from migrations_app.models import Conversation, Thread, ThreadStatus
from migrations_app.preview import preview_thread


def assert_migrated_exactly_once(sandbox_state, thread):
    """The sandbox holds the thread's items once, in order, in the conversation the mapping
    names."""
    thread.refresh_from_db()
    assert thread.status == ThreadStatus.SUCCEEDED, (thread.thread_id, thread.error_message)
    live = thread.conversations.live().get()
    stored = sandbox_state.conversations[live.conversation_id]["items"]
    expected = preview_thread(thread).items
    assert [item_fingerprint(i) for i in stored] == [item_fingerprint(i) for i in expected]
    assert thread.items_committed == thread.items_total == len(expected)
    assert live.verified_item_count == len(expected)


def assert_no_orphan_holds_items(sandbox_state):
    """No conversation holding customer items is missing from the mapping."""
    named = set(Conversation.objects.values_list("conversation_id", flat=True))
    orphans = [c for c, conv in sandbox_state.conversations.items()
               if c not in named and conv["items"]]  # fmt: skip
    assert not orphans, f"conversations with items that the mapping does not name: {orphans}"


def assert_every_thread_ended_clearly():
    unclear = Thread.objects.exclude(status=ThreadStatus.SUCCEEDED).exclude(
        status=ThreadStatus.FAILED, error_kind__gt="", error_message__gt=""
    )
    assert not unclear.exists(), list(unclear.values_list("thread_id", "status", "error_message"))

"""What tests are made of: source objects in the Assistants API's wire shape, and rows of the
console's own models in a given state (as the state machine leaves them: one UPDATE, never a save
of a whole thread row)."""

from typing import Any

from migrations_app import intake
from migrations_app.models import BulkAction, Conversation, ImportBatch, Thread, ThreadStatus
from migrations_app.reasons import error_template
from migrations_app.sandbox import generate_dataset

HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2"> {{ 7|add:1 }}'


def source_thread(thread_id, metadata=None):
    return {
        "id": thread_id,
        "object": "thread",
        "created_at": 1,
        "metadata": metadata or {},
        "tool_resources": None,
    }


def source_message(message_id, thread_id, text, role="user", created_at=1):
    return {
        "id": message_id,
        "object": "thread.message",
        "created_at": created_at,
        "thread_id": thread_id,
        "role": role,
        "assistant_id": None,
        "run_id": None,
        "attachments": [],
        "metadata": {},
        "status": "completed",
        "incomplete_details": None,
        "completed_at": created_at,
        "incomplete_at": None,
        "content": [{"type": "text", "text": {"value": text, "annotations": []}}],
    }


def hostile_bundle():
    """A thread whose metadata and message are an XSS and template-injection attempt."""
    return {
        "thread": source_thread("thread_hostile", {"note": HOSTILE}),
        "messages": [source_message("msg_hostile", "thread_hostile", HOSTILE)],
        "runs": [],
        "run_steps": [],
    }


# --- rows of the console's models ---------------------------------------------------------------
def mirrored(seed: int = 4, count: int = 30) -> list[dict[str, Any]]:
    """`count` generated threads (and their assistants) loaded as an export would load them;
    returns their bundles."""
    assistants, bundles = generate_dataset(seed=seed, thread_count=count)
    bundles = list(bundles)
    intake.upsert_assistants(assistants)
    intake.store_bundles(bundles)
    return bundles


def in_state(thread: Thread, status: str, **fields: Any) -> Thread:
    """`thread` moved to `status` (and `fields`), returned fresh from the database."""
    Thread.objects.filter(pk=thread.pk).update(status=status, **fields)
    thread.refresh_from_db()
    return thread


def error(message: str) -> dict[str, str]:
    """A thread's error message with its reason, as `states` writes them together."""
    return {"error_message": message, "error_template": error_template(message)}


def failed(
    thread: Thread, error_kind: str = "transient", error_message: str = "boom", **fields: Any
) -> Thread:
    return in_state(
        thread, ThreadStatus.FAILED, error_kind=error_kind, **error(error_message), **fields
    )


def succeeded(thread: Thread, conversation_id: str = "", **fields: Any) -> Thread:
    """Migrated, with its live conversation when `conversation_id` is given."""
    thread = in_state(thread, ThreadStatus.SUCCEEDED, **fields)
    if conversation_id:
        give_conversation(thread, conversation_id)
    return thread


def threads(count: int, prefix: str = "thread_made", **fields: Any) -> list[Thread]:
    """`count` threads registered by id (not fetched), in one INSERT."""
    return Thread.objects.bulk_create(
        Thread(thread_id=f"{prefix}{index:05d}", **fields) for index in range(count)
    )


def import_batch(**fields: Any) -> ImportBatch:
    return ImportBatch.objects.create(**{"source": "csv", "filename": "ids.csv", **fields})


def bulk_action(**fields: Any) -> BulkAction:
    return BulkAction.objects.create(**{"action": "retry", "eligible": 120, **fields})


def give_conversation(thread: Thread, conversation_id: str, **fields: Any) -> Conversation:
    """A live conversation for `thread`, as the state machine records it (the Conversation row
    and the thread's own copy of its id)."""
    Thread.objects.filter(pk=thread.pk).update(conversation_id=conversation_id)
    thread.conversation_id = conversation_id
    return Conversation.objects.create(thread=thread, conversation_id=conversation_id, **fields)

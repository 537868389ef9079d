"""Source objects in the Assistants API's wire shape, for tests that need a specific one."""

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


def give_conversation(thread, conversation_id, **fields):
    """A live conversation for `thread`, as the state machine records it (the Conversation row
    and the thread's own copy of its id)."""
    from migrations_app.models import Conversation, Thread

    Thread.objects.filter(pk=thread.pk).update(conversation_id=conversation_id)
    thread.conversation_id = conversation_id
    return Conversation.objects.create(thread=thread, conversation_id=conversation_id, **fields)

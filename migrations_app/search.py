"""Finding threads and conversations from what staff paste from a ticket: a whole id, the start
of one (with or without its `thread_` / `conv_` prefix), or a metadata value.

Id searches are prefix matches (LIKE 'x%'), which PostgreSQL serves from pattern-ops indexes
whatever the database's collation: Django adds one (`…_like`) beside every unique CharField, and
`thread_conversation_prefix_idx` covers a thread's live conversation id.
"""

from django.db.models import Q, QuerySet
from django.db.models.fields.json import KeyTextTransform, KeyTransform

THREAD_PREFIX = "thread_"
CONVERSATION_PREFIX = "conv_"


def _live_conversation_starts(prefix: str) -> Q:
    # The partial index holds only threads with a conversation: say so, or it is not used.
    return Q(conversation_id__startswith=prefix) & ~Q(conversation_id="")


def search_threads(threads: QuerySet, term: str) -> QuerySet:
    """`thread_…` and `conv_…` search those ids by prefix; `key=value` an exact metadata value;
    anything else is first taken as the start of a thread or conversation id without its
    prefix ("o3lh0z" finds thread_o3lh0z…), and only if no id starts so, as part of a metadata
    value."""
    term = term.strip()
    if not term:
        return threads
    if term.startswith(THREAD_PREFIX):
        return threads.filter(thread_id__startswith=term)
    if term.startswith(CONVERSATION_PREFIX):
        return threads.filter(_live_conversation_starts(term))
    if "=" in term:
        key, value = (part.strip() for part in term.split("=", 1))
        return threads.alias(
            _metadata_value=KeyTextTransform(key, KeyTransform("metadata", "data"))
        ).filter(_metadata_value=value)
    by_id = threads.filter(
        Q(thread_id__startswith=THREAD_PREFIX + term)
        | _live_conversation_starts(CONVERSATION_PREFIX + term)
    )
    if by_id.exists():
        return by_id
    return threads.filter(data__metadata__icontains=term)


def search_conversations(conversations: QuerySet, term: str) -> QuerySet:
    """The same id rules over every conversation, live or replaced."""
    term = term.strip()
    if not term:
        return conversations
    if term.startswith(CONVERSATION_PREFIX):
        return conversations.filter(conversation_id__startswith=term)
    if term.startswith(THREAD_PREFIX):
        return conversations.filter(thread__thread_id__startswith=term)
    return conversations.filter(
        Q(conversation_id__startswith=CONVERSATION_PREFIX + term)
        | Q(thread__thread_id__startswith=THREAD_PREFIX + term)
    )

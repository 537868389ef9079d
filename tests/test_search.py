"""Search as support staff use it: fragments of ids pasted from tickets, served by indexes."""

import pytest
from django.db import connection
from django.urls import reverse

from migrations_app import dashboard, intake, search
from migrations_app.models import Conversation, Thread
from tests.factories import source_message, source_thread

pytestmark = pytest.mark.django_db

THREADS = reverse("admin:migrations_app_thread_changelist")
CONVERSATIONS = reverse("admin:migrations_app_conversation_changelist")


@pytest.fixture
def threads():
    """Three mirrored threads; two have a live conversation."""
    bundles = [
        {
            "thread": source_thread(thread_id, {"customer": customer}),
            "messages": [source_message(f"msg_{thread_id}", thread_id, "hi")],
            "runs": [],
            "run_steps": [],
        }
        for thread_id, customer in [
            ("thread_o3lh0zI0IBuHXTUoGgaVHaLZ", "cust_0001"),
            ("thread_o3XXXXI0IBuHXTUoGgaVHaLZ", "cust_0002"),
            ("thread_Qq9conv68aI0IBuHXTUoGgaV", "o3lh0z-lookalike"),
        ]
    ]
    intake.store_bundles(bundles)
    for thread_id, conversation_id in [
        ("thread_o3lh0zI0IBuHXTUoGgaVHaLZ", "conv_68a5f1e2"),
        ("thread_Qq9conv68aI0IBuHXTUoGgaV", "conv_77b0c3d4"),
    ]:
        thread = Thread.objects.get(thread_id=thread_id)
        Conversation.objects.create(thread=thread, conversation_id=conversation_id)
        # What the state machine does when it starts the conversation.
        Thread.objects.filter(pk=thread.pk).update(conversation_id=conversation_id)
    return {t.thread_id: t for t in Thread.objects.all()}


def found(client, term, url=THREADS):
    response = client.get(url, {"q": term})
    assert response.status_code == 200
    return sorted(str(obj) for obj in response.context["cl"].result_list)


def test_a_fragment_without_prefix_finds_the_thread_whose_id_starts_with_it(admin_client, threads):
    assert found(admin_client, "o3lh0z") == ["thread_o3lh0zI0IBuHXTUoGgaVHaLZ"]


def test_a_shorter_fragment_finds_every_thread_starting_with_it(admin_client, threads):
    assert found(admin_client, "o3") == [
        "thread_o3XXXXI0IBuHXTUoGgaVHaLZ",
        "thread_o3lh0zI0IBuHXTUoGgaVHaLZ",
    ]


def test_the_start_of_a_full_thread_id_finds_it(admin_client, threads):
    assert found(admin_client, "  thread_o3lh0zI0IB ") == ["thread_o3lh0zI0IBuHXTUoGgaVHaLZ"]


def test_a_fragment_finds_the_thread_by_the_start_of_its_live_conversation_id(
    admin_client, threads
):
    assert found(admin_client, "68a5") == ["thread_o3lh0zI0IBuHXTUoGgaVHaLZ"]
    assert found(admin_client, "conv_77b") == ["thread_Qq9conv68aI0IBuHXTUoGgaV"]


def test_a_prefixed_term_searches_only_that_kind_of_id(admin_client, threads):
    assert found(admin_client, "thread_68a5") == []
    assert found(admin_client, "conv_o3lh0z") == []


def test_a_fragment_that_starts_no_id_searches_metadata_values(admin_client, threads):
    assert found(admin_client, "cust_000") == [
        "thread_o3XXXXI0IBuHXTUoGgaVHaLZ",
        "thread_o3lh0zI0IBuHXTUoGgaVHaLZ",
    ]


def test_an_id_match_wins_over_a_metadata_lookalike(admin_client, threads):
    assert "thread_Qq9conv68aI0IBuHXTUoGgaV" not in found(admin_client, "o3lh0z")


def test_key_equals_value_matches_one_metadata_key_exactly(admin_client, threads):
    assert found(admin_client, "customer = cust_0002") == ["thread_o3XXXXI0IBuHXTUoGgaVHaLZ"]
    assert found(admin_client, "customer=cust_000") == []


def test_the_conversations_list_finds_live_and_replaced_ones_by_prefix(admin_client, threads):
    first = threads["thread_o3lh0zI0IBuHXTUoGgaVHaLZ"]
    Conversation.objects.filter(thread=first).update(replaced_at="2026-01-01T00:00Z")
    Conversation.objects.create(thread=first, conversation_id="conv_68a5ffff")
    assert found(admin_client, "68a5f", CONVERSATIONS) == ["conv_68a5f1e2", "conv_68a5ffff"]
    assert found(admin_client, "thread_Qq9", CONVERSATIONS) == ["conv_77b0c3d4"]
    assert found(admin_client, "Qq9conv", CONVERSATIONS) == ["conv_77b0c3d4"]


def plan(queryset):
    """The plan PostgreSQL picks when a sequential scan is not an option: on a handful of rows
    it would scan anyway, so this shows which index can serve the query, if any can. Unordered:
    on so few rows the planner may as well walk the list's ordering index and filter, whichever
    the statistics earlier tests left make cheaper."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.order_by().explain()


def test_id_prefix_searches_are_served_by_indexes(threads):
    if connection.vendor != "postgresql":
        pytest.fail("the suite runs on PostgreSQL")
    # Enough other threads, and statistics of them, that a prefix is as selective as on a real
    # table: on three rows, or on statistics earlier tests left, the planner's pick between an
    # ordered scan and the prefix index was a near tie that followed the test order.
    Thread.objects.bulk_create(Thread(thread_id=f"thread_zz{n:06d}") for n in range(3000))
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Thread._meta.db_table}")
    by_thread = plan(search.search_threads(Thread.objects.all(), "thread_o3lh0z"))
    by_conversation = plan(search.search_threads(Thread.objects.all(), "conv_68a5"))
    bare = plan(
        Thread.objects.filter(
            search.Q(thread_id__startswith="thread_o3")
            | search._live_conversation_starts("conv_o3")
        )
    )
    assert "migrations_app_thread_thread_id_" in by_thread and "_like" in by_thread, by_thread
    assert "thread_conversation_prefix_idx" in by_conversation, by_conversation
    assert "_like" in bare and "thread_conversation_prefix_idx" in bare, bare
    assert "Seq Scan" not in by_thread + by_conversation + bare


def test_the_dashboards_retry_line_is_served_by_its_partial_index(threads):
    assert "thread_retrying_idx" in plan(dashboard.retrying_threads())

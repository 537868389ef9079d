"""An upgrade in the middle of a migration (issue 20, finding 11): the release before (0b2748e,
schema 0007) was migrating threads when its cluster was killed; the new release is checked out,
`migrate` brings the schema forward, new workers start. Every thread ends exactly once,
whatever state and whichever release left it in."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from migrations_app import actions, states, upload
from migrations_app.conversion import Options, convert_thread
from migrations_app.models import Thread, ThreadStatus
from tests import checks

pytestmark = pytest.mark.django_db(transaction=True)
OLD_RELEASE = [("migrations_app", "0007_state_machine_fields")]


def migrate_to(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


def latest():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


def old_world(apps, sandbox):
    """Threads as the old release left them, written with its own schema: succeeded, running
    (their worker killed mid-upload, lease expired), failed, and queued without a task any
    live cluster will run (the killed cluster had taken it; the old release kept no
    queued_task)."""
    OldThread = apps.get_model("migrations_app", "Thread")
    Message = apps.get_model("migrations_app", "Message")
    Conversation = apps.get_model("migrations_app", "Conversation")
    state = sandbox.state
    long_ago = timezone.now() - timedelta(hours=1)
    plan = ["succeeded"] * 5 + ["running"] * 3 + ["failed"] * 2 + ["queued"] * 10
    made = {}
    for index, (thread_id, status) in enumerate(zip(sorted(state.threads), plan, strict=False)):
        messages = state.messages[thread_id]
        items = convert_thread(state.threads[thread_id], messages, [], Options()).items
        thread = OldThread.objects.create(
            thread_id=thread_id,
            data=state.threads[thread_id],
            message_count=len(messages),
            fetched_at=long_ago,
            status=status,
            items_total=len(items),
            requested_action="migrate",
            task_group="migrate (old release)",
            updated_at=long_ago,
        )
        Message.objects.bulk_create(
            Message(thread=thread, message_id=m["id"], position=p, role=m["role"],
                    created_at=m["created_at"], data=m)
            for p, m in enumerate(messages)
        )  # fmt: skip
        if status in ("succeeded", "running"):
            conversation = state.create_conversation({}, None)["id"]
            written = items if status == "succeeded" else items[: min(len(items) - 1, 20)]
            stored = state.add_items(conversation, written) if written else []
            Conversation.objects.create(
                thread=thread,
                conversation_id=conversation,
                items_committed=len(written),
                last_item_id=stored[-1]["id"] if stored else "",
                verified_at=long_ago if status == "succeeded" else None,
                verified_item_count=len(written) if status == "succeeded" else None,
                options={"tool_calls": True, "attachments": True, "source_thread_id": True},
            )
            OldThread.objects.filter(pk=thread.pk).update(
                conversation_id=conversation,
                items_committed=len(written),
                last_item_id=stored[-1]["id"] if stored else "",
            )
        if status == "running":
            OldThread.objects.filter(pk=thread.pk).update(
                lease_owner=f"old-host:{index}:migrate_1#dead", lease_expires_at=long_ago
            )
        if status == "failed":
            OldThread.objects.filter(pk=thread.pk).update(
                error_kind="transient", error_message="The API did not answer in time"
            )
        made[thread_id] = status
    return made


def test_an_upgrade_mid_migration_finishes_every_thread_exactly_once(sandbox, make_worker):
    targets = latest()
    made = old_world(migrate_to(OLD_RELEASE), sandbox)
    migrate_to(targets)

    swept = states.sweep("resume after the upgrade")
    assert (swept.resumed, swept.requeued) == (3, 10), "running resumed, queued re-queued"
    actions.apply("retry", Thread.objects.filter(status=ThreadStatus.FAILED), actor_label="ops")
    for thread in Thread.objects.filter(status=ThreadStatus.QUEUED):  # what the workers do
        assert upload.migrate_thread(thread.pk, make_worker()) == "succeeded"

    assert len(made) == Thread.objects.filter(status=ThreadStatus.SUCCEEDED).count() == 20
    for thread in Thread.objects.all():
        checks.assert_migrated_exactly_once(sandbox.state, thread)
    checks.assert_no_orphan_holds_items(sandbox.state)

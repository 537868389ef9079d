import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from migrations_app.models import (
    Conversation,
    ImportBatch,
    Message,
    RunStep,
    Thread,
    ThreadStatus,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def thread():
    return Thread.objects.create(thread_id="thread_model0001")


def test_a_thread_id_is_registered_once():
    Thread.objects.create(thread_id="thread_once")
    with pytest.raises(IntegrityError), transaction.atomic():
        Thread.objects.create(thread_id="thread_once")


def test_a_thread_has_at_most_one_live_conversation(thread):
    Conversation.objects.create(thread=thread, conversation_id="conv_a")
    with pytest.raises(IntegrityError), transaction.atomic():
        Conversation.objects.create(thread=thread, conversation_id="conv_b")


def test_a_replaced_conversation_stays_as_history_beside_the_live_one(thread):
    Conversation.objects.create(thread=thread, conversation_id="conv_a", replaced_at=timezone.now())
    Conversation.objects.create(thread=thread, conversation_id="conv_b")
    assert list(thread.conversations.live().values_list("conversation_id", flat=True)) == ["conv_b"]


def test_a_conversation_id_belongs_to_one_thread(thread):
    other = Thread.objects.create(thread_id="thread_other")
    Conversation.objects.create(thread=thread, conversation_id="conv_same")
    with pytest.raises(IntegrityError), transaction.atomic():
        Conversation.objects.create(thread=other, conversation_id="conv_same")


def test_a_message_is_mirrored_once_per_thread(thread):
    fields = {"thread": thread, "message_id": "msg_1", "position": 0, "role": "user",
              "created_at": 1, "data": {}}  # fmt: skip
    Message.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(**{**fields, "position": 1})


def test_a_run_step_is_mirrored_once_per_thread(thread):
    fields = {"thread": thread, "step_id": "step_1", "run_id": "run_1", "created_at": 1, "data": {}}
    RunStep.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        RunStep.objects.create(**fields)


def test_a_thread_with_a_conversation_cannot_be_deleted(thread):
    from django.db.models import ProtectedError

    Conversation.objects.create(thread=thread, conversation_id="conv_keep")
    with pytest.raises(ProtectedError):
        thread.delete()


def test_status_and_error_kind_reject_unknown_values_on_validation(thread):
    from django.core.exceptions import ValidationError

    thread.status = "exploded"
    with pytest.raises(ValidationError, match="status"):
        thread.full_clean()
    thread.status = ThreadStatus.FAILED
    thread.error_kind = "weird"
    with pytest.raises(ValidationError, match="error_kind"):
        thread.full_clean()


def test_import_batch_caps_its_error_list_but_counts_every_error():
    batch = ImportBatch(source=ImportBatch.Source.CSV)
    for line in range(ImportBatch.MAX_ERRORS + 5):
        batch.add_error("bad", line=line)
    assert batch.invalid_count == ImportBatch.MAX_ERRORS + 5
    assert len(batch.errors) == ImportBatch.MAX_ERRORS

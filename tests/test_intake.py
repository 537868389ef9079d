"""Intake from id lists, the live source API (the sandbox) and export files."""

import io
import json
import zipfile

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import OrmQ

from migrations_app import intake, openai_client
from migrations_app.intake import ids
from migrations_app.models import (
    Assistant,
    Attempt,
    Conversation,
    ErrorKind,
    ImportBatch,
    Message,
    RunStep,
    Thread,
    ThreadStatus,
)
from migrations_app.openai_client import source_client
from migrations_app.preview import preview_thread
from migrations_app.sandbox import generate_dataset
from tests.factories import give_conversation

pytestmark = pytest.mark.django_db


def run_import(text):
    batch = ImportBatch(source=ImportBatch.Source.PASTE)
    return intake.import_thread_ids(io.StringIO(text), batch=batch)


def imported_ids():
    return sorted(Thread.objects.values_list("thread_id", flat=True))


# --- thread ids -----------------------------------------------------------------------------------
def test_one_id_per_line_is_imported_trimmed():
    batch = run_import("thread_a\n  thread_b  \n\nthread_c\n")
    assert imported_ids() == ["thread_a", "thread_b", "thread_c"]
    assert (batch.new_count, batch.duplicate_count, batch.invalid_count) == (3, 0, 0)
    assert batch.status == ImportBatch.Status.DONE


def test_a_csv_with_a_thread_id_column_is_read_by_column():
    batch = run_import("customer,thread_id\nacme,thread_a\nglobex, thread_b\n")
    assert imported_ids() == ["thread_a", "thread_b"]
    assert batch.new_count == 2


def test_invalid_ids_are_reported_with_their_line_number():
    batch = run_import("thread_id\nthread_ok\nmsg_123\n\nthread bad\n")
    assert imported_ids() == ["thread_ok"]
    assert batch.invalid_count == 2
    assert [e["message"] for e in batch.errors] == [
        "Line 3: 'msg_123' is not a thread id (expected thread_…)",
        "Line 5: 'thread bad' is not a thread id (expected thread_…)",
    ]


def test_malformed_csv_lines_are_reported_and_the_rest_imported():
    batch = run_import('thread_id,note\nthread_a,ok\nthread_b\nthread_c,"unclosed\nthread_d,x\n')
    assert imported_ids() == ["thread_a", "thread_d"]
    assert [e["line"] for e in batch.errors] == [3, 4]
    assert batch.errors[0]["message"] == "Line 3: expected 2 fields, found 1"
    assert batch.errors[1]["message"].startswith("Line 4: malformed CSV")


def test_a_csv_header_without_thread_id_is_refused_whole():
    with pytest.raises(intake.IntakeError, match=r"no thread_id column \(found: id, name\)"):
        run_import("id,name\nthread_a,x\n")
    assert imported_ids() == []
    assert ImportBatch.objects.get().status == ImportBatch.Status.FAILED


def test_duplicates_in_the_file_and_in_the_database_are_counted_not_inserted():
    run_import("thread_a\n")
    batch = run_import("thread_a\nthread_b\nthread_b\n")
    assert imported_ids() == ["thread_a", "thread_b"]
    assert (batch.new_count, batch.duplicate_count) == (1, 2)


def test_duplicates_across_chunks_are_counted(monkeypatch):
    monkeypatch.setattr(ids, "ID_CHUNK", 2)
    batch = run_import("thread_a\nthread_b\nthread_a\nthread_c\nthread_b\n")
    assert (batch.new_count, batch.duplicate_count) == (3, 2)


def test_a_chunk_meeting_registered_ids_keeps_them_in_their_batch_and_adds_the_rest(monkeypatch):
    monkeypatch.setattr(ids, "ID_CHUNK", 3)
    first = run_import("thread_b\nthread_e\n")
    second = run_import("thread_a\nthread_b\nthread_c\nthread_d\nthread_e\nthread_f\n")
    assert (second.new_count, second.duplicate_count) == (4, 2)
    batches = dict(Thread.objects.values_list("thread_id", "import_batch_id"))
    assert batches == {
        "thread_a": second.pk, "thread_b": first.pk, "thread_c": second.pk,
        "thread_d": second.pk, "thread_e": first.pk, "thread_f": second.pk,
    }  # fmt: skip
    assert second.status == ImportBatch.Status.DONE


def test_a_crash_mid_file_imports_nothing(monkeypatch):
    monkeypatch.setattr(ids, "ID_CHUNK", 2)
    calls = []
    real = ids.bulk.insert_new_thread_ids

    def crash_on_second_chunk(model, ids, batch_id):
        calls.append(ids)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(model, ids, batch_id)

    monkeypatch.setattr(ids.bulk, "insert_new_thread_ids", crash_on_second_chunk)
    with pytest.raises(RuntimeError):
        run_import("thread_a\nthread_b\nthread_c\nthread_d\n")
    assert imported_ids() == []
    batch = ImportBatch.objects.get()
    assert batch.status == ImportBatch.Status.FAILED
    assert batch.new_count == 0
    assert "nothing was imported: disk full" in batch.errors[0]["message"]


def test_import_threads_command_prints_counts_and_errors(tmp_path, capsys):
    path = tmp_path / "ids.csv"
    path.write_text("thread_id\nthread_a\nbogus\nthread_a\n")
    call_command("import_threads", str(path))
    out, err = capsys.readouterr()
    assert "1 new, 1 duplicate, 1 invalid" in out
    assert "Line 3: 'bogus' is not a thread id" in err


def test_import_threads_command_names_a_missing_file(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_threads", str(tmp_path / "nope.csv"))


def test_import_threads_fetch_queues_one_task_per_new_thread(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("thread_a\nthread_b\n")
    call_command("import_threads", str(path), "--fetch")
    tasks = [q.task for q in OrmQ.objects.all()]
    assert sorted(t["args"][0] for t in tasks) == ["thread_a", "thread_b"]
    assert {t["func"] for t in tasks} == {"migrations_app.tasks.fetch_from_source"}
    assert {t["group"] for t in tasks} == {f"fetch batch {ImportBatch.objects.get().pk}"}


# --- the live source ------------------------------------------------------------------------------
def register(thread_id):
    return Thread.objects.create(thread_id=thread_id)


def a_thread_with_tool_calls(sandbox):
    run_id = next(iter(sandbox.state.steps))
    return sandbox.state.steps[run_id][0]["thread_id"]


def test_fetch_copies_thread_messages_in_order_and_tool_call_steps(sandbox):
    thread_id = a_thread_with_tool_calls(sandbox)
    register(thread_id)
    attempt = intake.fetch_for_staff(thread_id)
    assert attempt.outcome == Attempt.Outcome.SUCCEEDED
    thread = Thread.objects.get(thread_id=thread_id)
    source = sandbox.state.messages[thread_id]
    assert thread.data == sandbox.state.threads[thread_id]
    assert thread.message_count == len(source)
    assert list(thread.messages.order_by("position").values_list("message_id", flat=True)) == [
        m["id"] for m in source
    ]
    assert thread.messages.get(position=0).data == source[0]
    source_steps = [
        s for r in sandbox.state.runs[thread_id] for s in sandbox.state.steps.get(r["id"], [])
    ]
    assert sorted(thread.run_steps.values_list("step_id", flat=True)) == sorted(
        s["id"] for s in source_steps
    )


def test_fetch_reads_messages_in_pages_of_100_oldest_first(sandbox):
    thread_id = max(sandbox.state.messages, key=lambda t: len(sandbox.state.messages[t]))
    register(thread_id)
    intake.fetch_for_staff(thread_id)
    pages = -(-len(sandbox.state.messages[thread_id]) // 100)
    assert sandbox.state.request_counts["GET list_messages"] == pages
    assert Message.objects.filter(thread__thread_id=thread_id).count() == len(
        sandbox.state.messages[thread_id]
    )


def test_fetching_again_updates_and_never_duplicates(sandbox):
    thread_id = a_thread_with_tool_calls(sandbox)
    register(thread_id)
    intake.fetch_for_staff(thread_id)
    counts = (Message.objects.count(), RunStep.objects.count())
    sandbox.state.messages[thread_id][0]["content"] = [
        {"type": "text", "text": {"value": "edited", "annotations": []}}
    ]
    intake.fetch_for_staff(thread_id)
    assert (Message.objects.count(), RunStep.objects.count()) == counts
    first = Message.objects.get(thread__thread_id=thread_id, position=0)
    assert first.data["content"][0]["text"]["value"] == "edited"


def test_a_thread_whose_upload_started_keeps_its_mirror(sandbox):
    thread_id = a_thread_with_tool_calls(sandbox)
    thread = register(thread_id)
    intake.fetch_for_staff(thread_id)
    give_conversation(thread, "conv_x")
    sandbox.state.messages[thread_id].pop()
    attempt = intake.fetch_for_staff(thread_id)
    assert attempt.outcome == Attempt.Outcome.SKIPPED
    thread.refresh_from_db()
    assert Message.objects.filter(thread=thread).count() == thread.message_count


def test_a_404_thread_is_recorded_as_failed_not_found_not_raised(sandbox):
    register("thread_unknown")
    attempt = intake.fetch_for_staff("thread_unknown")
    thread = Thread.objects.get(thread_id="thread_unknown")
    assert thread.status == ThreadStatus.FAILED
    assert thread.error_kind == ErrorKind.NOT_FOUND
    assert thread.error_http_status == 404
    assert thread.error_request_id.startswith("req_")
    assert "No thread found with id 'thread_unknown'" in thread.error_message
    assert attempt.outcome == Attempt.Outcome.FAILED
    assert attempt.request_id == thread.error_request_id


def test_a_thread_found_after_a_404_is_pending_again(sandbox):
    thread_id = a_thread_with_tool_calls(sandbox)
    bundle = {"thread": sandbox.state.threads.pop(thread_id)}
    register(thread_id)
    intake.fetch_for_staff(thread_id)
    sandbox.state.threads[thread_id] = bundle["thread"]
    intake.fetch_for_staff(thread_id)
    thread = Thread.objects.get(thread_id=thread_id)
    assert (thread.status, thread.error_kind) == (ThreadStatus.PENDING, "")


def test_a_dropped_connection_fails_the_fetch_as_transient(sandbox):
    thread_id = a_thread_with_tool_calls(sandbox)
    register(thread_id)
    sandbox.state.configure_faults(
        scripted=[{"kind": "drop", "method": "GET", "path_contains": "/messages", "times": 10}]
    )
    intake.fetch_for_staff(thread_id, client=source_client(max_retries=0))
    thread = Thread.objects.get(thread_id=thread_id)
    assert thread.error_kind == ErrorKind.TRANSIENT
    assert "connection to the API failed" in thread.error_message
    assert not thread.messages.exists()


def test_sync_assistants_copies_every_assistant_once(sandbox):
    assert intake.sync_assistants().stored == len(sandbox.state.assistants)
    intake.sync_assistants()
    assert Assistant.objects.count() == len(sandbox.state.assistants)
    first = next(iter(sandbox.state.assistants.values()))
    assert Assistant.objects.get(assistant_id=first["id"]).data == first


def test_sync_assistants_links_threads_fetched_before(sandbox):
    thread_id = a_thread_with_tool_calls(sandbox)
    register(thread_id)
    intake.fetch_for_staff(thread_id)
    call_command("sync_assistants")
    assistant_id = sandbox.state.runs[thread_id][0]["assistant_id"]
    assert Thread.objects.get(thread_id=thread_id).assistant.assistant_id == assistant_id


# --- export files ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset():
    assistants, bundles = generate_dataset(seed=5, thread_count=12)
    return assistants, list(bundles)


def write_directory(root, dataset):
    assistants, bundles = dataset
    (root / "threads").mkdir(parents=True)
    (root / "assistants.json").write_text(json.dumps(assistants))
    for bundle in bundles:
        (root / "threads" / f"{bundle['thread']['id']}.json").write_text(json.dumps(bundle))
    return root


def write_jsonl(path, bundles):
    path.write_text("".join(json.dumps(b) + "\n" for b in bundles))
    return path


def assert_loaded(dataset, batch):
    _, bundles = dataset
    assert batch.status == ImportBatch.Status.DONE
    assert batch.new_count == len(bundles)
    assert Thread.objects.count() == len(bundles)
    assert Message.objects.count() == sum(len(b["messages"]) for b in bundles)
    for bundle in bundles[:3]:
        thread = Thread.objects.get(thread_id=bundle["thread"]["id"])
        assert thread.fetched_at is not None
        assert [m.data for m in thread.messages.order_by("position")] == bundle["messages"]


def test_an_export_directory_loads_threads_and_assistants(tmp_path, dataset):
    batch = intake.load_export(write_directory(tmp_path / "export", dataset))
    assert_loaded(dataset, batch)
    assert Assistant.objects.count() == len(dataset[0])
    assert Thread.objects.filter(assistant__isnull=False).count() > 0


def test_a_jsonl_export_loads(tmp_path, dataset):
    assert_loaded(dataset, intake.load_export(write_jsonl(tmp_path / "x.jsonl", dataset[1])))


def test_a_zip_of_a_directory_or_of_jsonl_loads(tmp_path, dataset):
    root = write_directory(tmp_path / "export", dataset)
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in root.rglob("*.json"):
            out.write(path, str(path.relative_to(root.parent)))
    assert_loaded(dataset, intake.load_export(archive))
    Message.objects.all().delete()
    Thread.objects.all().delete()
    jsonl_zip = tmp_path / "lines.zip"
    with zipfile.ZipFile(jsonl_zip, "w") as out:
        out.write(write_jsonl(tmp_path / "all.jsonl", dataset[1]), "all.jsonl")
    assert_loaded(dataset, intake.load_export(jsonl_zip))


def test_loading_the_same_export_twice_updates_and_never_duplicates(tmp_path, dataset):
    path = write_jsonl(tmp_path / "x.jsonl", dataset[1])
    intake.load_export(path)
    second = intake.load_export(path)
    assert (second.new_count, second.duplicate_count) == (0, len(dataset[1]))
    assert Message.objects.count() == sum(len(b["messages"]) for b in dataset[1])


def test_invalid_json_lines_are_reported_by_file_and_line_and_the_rest_loads(tmp_path, dataset):
    lines = [json.dumps(b) for b in dataset[1][:3]]
    lines.insert(1, '{"thread": {"id": "thread_x"')
    lines.insert(3, json.dumps({"thread": {"id": "not-a-thread"}}))
    lines.append(json.dumps({"thread": {"id": "thread_y"}, "messages": [{"id": "msg_1"}]}))
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    batch = intake.load_export(path)
    assert batch.new_count == 3
    assert batch.invalid_count == 3
    assert [(e["file"], e["line"]) for e in batch.errors] == [
        ("mixed.jsonl", 2), ("mixed.jsonl", 4), ("mixed.jsonl", 6)
    ]  # fmt: skip
    assert batch.errors[0]["message"].startswith("invalid JSON: ")
    assert batch.errors[1]["message"] == (
        "'not-a-thread' is not a thread id (expected thread_…, at most 64 characters)"
    )
    assert batch.errors[2]["message"] == (
        "thread_y: messages[0] (msg_1).role is None: expected user or assistant"
    )


def test_a_bad_file_in_a_directory_is_named_and_the_others_load(tmp_path, dataset):
    root = write_directory(tmp_path / "export", dataset)
    (root / "threads" / "thread_broken.json").write_text("{oops")
    batch = intake.load_export(root)
    assert batch.new_count == len(dataset[1])
    assert batch.errors[0]["file"] == "threads/thread_broken.json"


def test_a_truncated_zip_is_refused_with_a_clear_error(tmp_path, dataset):
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.write(write_jsonl(tmp_path / "all.jsonl", dataset[1]), "all.jsonl")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        intake.IntakeError, match=r"export.zip is not a readable zip file .*truncated"
    ):
        intake.load_export(archive)
    assert ImportBatch.objects.get().status == ImportBatch.Status.FAILED
    assert Thread.objects.count() == 0


def test_an_unknown_export_form_is_refused(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("x")
    with pytest.raises(CommandError, match=r"expected a directory, a \.jsonl file or a \.zip file"):
        call_command("load_export", str(path))


def test_load_export_command_reports_counts_and_errors(tmp_path, dataset, capsys):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(dataset[1][0]) + "\nnot json\n")
    call_command("load_export", str(path))
    out, err = capsys.readouterr()
    assert "1 new, 0 updated, 0 kept (running or upload started), 1 invalid" in out
    assert "x.jsonl:2: invalid JSON" in err


# --- the mapping ----------------------------------------------------------------------------------
def test_export_mapping_writes_header_then_one_row_per_thread(tmp_path):
    done = Thread.objects.create(
        thread_id="thread_done", status=ThreadStatus.SUCCEEDED, items_committed=7, warning_count=2
    )
    Conversation.objects.create(
        thread=done, conversation_id="conv_old", replaced_at="2026-01-01T00:00:00Z"
    )
    give_conversation(done, "conv_live")
    Thread.objects.create(thread_id="thread_todo")
    out = tmp_path / "map.csv"
    call_command("export_mapping", "-o", str(out))
    assert out.read_text().splitlines() == [
        "thread_id,conversation_id,status,items,warnings",
        "thread_done,conv_live,succeeded,7,2",
        "thread_todo,,pending,0,0",
    ]


def test_export_mapping_to_stdout_filters_by_status(capsys):
    Thread.objects.create(thread_id="thread_a", status=ThreadStatus.FAILED)
    Thread.objects.create(thread_id="thread_b")
    call_command("export_mapping", "--status", "failed")
    assert capsys.readouterr().out.splitlines()[1:] == ["thread_a,,failed,0,0"]


# --- stale writes: the mirror changes only where states.lock_writable_mirrors allows ------------
def running_under(thread, owner):
    Thread.objects.filter(pk=thread.pk).update(
        status=ThreadStatus.RUNNING, lease_owner=owner, lease_expires_at=timezone.now()
    )


def while_fetching(monkeypatch, change):
    """Run `change()` after the source answered and before the result is stored."""
    real = openai_client.fetch_thread_bundle

    def fetch_then_change(client, thread_id):
        try:
            return real(client, thread_id)
        finally:
            change()

    monkeypatch.setattr(openai_client, "fetch_thread_bundle", fetch_then_change)


def test_a_fetch_that_fails_while_a_worker_runs_the_thread_changes_nothing(sandbox, monkeypatch):
    thread = register("thread_unknown")
    while_fetching(monkeypatch, lambda: running_under(thread, "worker-1"))
    attempt = intake.fetch_for_staff("thread_unknown")
    thread.refresh_from_db()
    assert (thread.status, thread.lease_owner, thread.error_kind) == ("running", "worker-1", "")
    assert attempt.outcome == Attempt.Outcome.FAILED
    assert "moved on" in attempt.detail["kept"]


def test_a_fetch_that_succeeds_after_a_worker_took_the_thread_leaves_its_mirror(
    sandbox, monkeypatch
):
    thread_id = a_thread_with_tool_calls(sandbox)
    thread = register(thread_id)
    while_fetching(monkeypatch, lambda: running_under(thread, "worker-1"))
    attempt = intake.fetch_for_staff(thread_id)
    thread.refresh_from_db()
    assert attempt.outcome == Attempt.Outcome.SKIPPED
    assert (thread.data, thread.fetched_at, thread.messages.count()) == (None, None, 0)
    assert thread.status == ThreadStatus.RUNNING


def source_bundle(thread_id):
    """The thread as the source answers it."""
    from migrations_app import openai_client

    return openai_client.fetch_thread_bundle(openai_client.source_client(), thread_id)


def test_a_worker_fetches_the_thread_it_holds_into_the_mirror(sandbox):
    thread_id = a_thread_with_tool_calls(sandbox)
    thread = register(thread_id)
    running_under(thread, "worker-1")
    thread.refresh_from_db()
    fetched = intake.store_fetched(thread, source_bundle(thread_id), lease_owner="worker-1")
    assert (fetched.failure, fetched.skipped) == (None, False)
    thread.refresh_from_db()
    assert thread.message_count == len(sandbox.state.messages[thread_id]) > 0
    assert thread.status == ThreadStatus.RUNNING


def test_a_worker_that_lost_its_lease_writes_nothing_and_is_told(sandbox):
    thread_id = a_thread_with_tool_calls(sandbox)
    thread = register(thread_id)
    running_under(thread, "worker-2")  # the lease was taken over
    assert intake.store_fetched(thread, source_bundle(thread_id), lease_owner="worker-1").skipped
    assert not Message.objects.exists()
    assert Thread.objects.get().fetched_at is None


def test_an_export_leaves_threads_running_or_uploading_as_they_are(tmp_path, dataset):
    bundles = dataset[1][:3]
    intake.store_bundles(bundles)
    first, second, third = (Thread.objects.get(thread_id=b["thread"]["id"]) for b in bundles)
    running_under(first, "worker-1")
    Thread.objects.filter(pk=second.pk).update(conversation_id="conv_started", status="failed")
    edited = json.loads(json.dumps(bundles))
    for bundle in edited:
        bundle["messages"] = bundle["messages"][:1]
    batch = intake.load_export(write_jsonl(tmp_path / "again.jsonl", edited))
    assert (batch.duplicate_count, batch.skipped_count) == (1, 2)
    assert Thread.objects.get(pk=first.pk).message_count == len(bundles[0]["messages"])
    assert Thread.objects.get(pk=second.pk).message_count == len(bundles[1]["messages"])
    assert Thread.objects.get(pk=third.pk).message_count == 1
    assert Thread.objects.get(pk=first.pk).status == ThreadStatus.RUNNING


def test_intake_never_saves_a_whole_thread_row(sandbox, tmp_path, dataset, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a full save of a thread row")

    register("thread_unknown")
    thread_id = a_thread_with_tool_calls(sandbox)
    register(thread_id)
    monkeypatch.setattr(Thread, "save", refuse)
    intake.load_export(write_jsonl(tmp_path / "x.jsonl", dataset[1][:2]))
    intake.fetch_for_staff(thread_id)
    intake.fetch_for_staff("thread_unknown")
    intake.sync_assistants()
    assert Thread.objects.get(thread_id="thread_unknown").error_kind == ErrorKind.NOT_FOUND


def test_a_fetched_thread_links_its_assistant_when_synced_first(sandbox):
    intake.sync_assistants()
    thread_id = a_thread_with_tool_calls(sandbox)
    register(thread_id)
    intake.fetch_for_staff(thread_id)
    assistant_id = sandbox.state.runs[thread_id][0]["assistant_id"]
    assert Thread.objects.get(thread_id=thread_id).assistant.assistant_id == assistant_id


def test_a_fetched_thread_knows_its_warnings_before_any_migration(sandbox):
    thread_id = next(
        t
        for t in sandbox.state.threads
        if any(
            block.get("text", {}).get("annotations")
            for m in sandbox.state.messages[t]
            for block in m["content"]
        )
    )
    register(thread_id)
    intake.fetch_for_staff(thread_id)
    thread = Thread.objects.get(thread_id=thread_id)
    conversion = preview_thread(thread)
    assert (thread.warning_count, thread.items_total) == (
        len(conversion.warnings),
        len(conversion.items),
    )
    assert thread.warning_count > 0
    assert Thread.objects.filter(warning_count__gt=0).exists()


def test_a_source_answering_with_unusable_thread_data_fails_the_fetch_in_words(
    sandbox, monkeypatch
):
    thread_id = a_thread_with_tool_calls(sandbox)
    register(thread_id)
    sandbox.state.messages[thread_id][0]["created_at"] = 1717000000123
    attempt = intake.fetch_for_staff(thread_id)
    thread = Thread.objects.get(thread_id=thread_id)
    assert (thread.status, thread.error_kind) == (ThreadStatus.FAILED, ErrorKind.INVALID)
    assert thread.error_message.startswith(
        "Fetching from the source failed: The source returned thread data the console cannot "
        "migrate: messages[0] ("
    )
    assert "looks like milliseconds" in attempt.error_message
    assert not thread.messages.exists()


# --- the batch always ends ------------------------------------------------------------------------
def test_an_export_stopped_by_any_exception_ends_failed_with_its_counts(
    tmp_path, dataset, monkeypatch
):
    from migrations_app.intake import exports

    real = exports.prepare

    def crash_on_the_third(bundle, *args, **kwargs):
        if bundle["thread"]["id"] == dataset[1][2]["thread"]["id"]:
            raise MemoryError("out of memory")
        return real(bundle, *args, **kwargs)

    monkeypatch.setattr(exports, "BUNDLE_CHUNK", 2)
    monkeypatch.setattr(exports, "prepare", crash_on_the_third)
    with pytest.raises(MemoryError):
        intake.load_export(write_jsonl(tmp_path / "x.jsonl", dataset[1][:4]))
    batch = ImportBatch.objects.get()
    assert batch.status == ImportBatch.Status.FAILED
    assert batch.new_count == 2 == Thread.objects.count()
    assert batch.errors[0]["message"] == (
        "Import stopped, the threads stored before it are kept; loading the same export again "
        "stores the rest without duplicating any: out of memory (MemoryError)"
    )
    assert "Traceback" not in batch.errors[0]["message"]


def test_an_interrupted_id_import_ends_failed_and_imports_nothing(monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(ids.bulk, "insert_new_thread_ids", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_import("thread_a\n")
    batch = ImportBatch.objects.get()
    assert (batch.status, batch.new_count) == (ImportBatch.Status.FAILED, 0)
    assert batch.errors[0]["message"] == "Import interrupted: nothing was imported."


def test_a_non_utf8_id_file_is_refused_with_the_byte_and_line(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_bytes(b"thread_id\nthread_a\nthread_\xe9\n")
    with pytest.raises(CommandError, match=r"line 3 is not UTF-8 text \(byte 0xe9 at column 8\)"):
        call_command("import_threads", str(path))
    assert ImportBatch.objects.get().status == ImportBatch.Status.FAILED
    assert not Thread.objects.exists()


def test_the_demo_loads_the_sandbox_assistants_before_its_thread_ids(sandbox):
    from migrations_app.management.commands.demo import Command

    command = Command(stdout=io.StringIO())
    command._sync_assistants()
    command._import_demo_ids(list(sandbox.state.threads))
    assert Assistant.objects.count() == len(sandbox.state.assistants)
    batch = ImportBatch.objects.get()
    assert batch.fetch_queued == len(sandbox.state.threads) + 1  # and the unknown id
    assert OrmQ.objects.count() == batch.fetch_queued


def test_the_demo_loads_an_export_of_each_layout_before_its_thread_ids():
    from migrations_app import coverage
    from migrations_app.management.commands import demo

    demo_ids = [b["thread"]["id"] for b in generate_dataset(seed=1, thread_count=30)[1]]
    command = demo.Command(stdout=io.StringIO())
    command._load_demo_exports(len(demo_ids))  # holding some of the demo sandbox's threads
    command._import_demo_ids(demo_ids)
    layouts = ImportBatch.objects.filter(source="export").order_by("pk")
    assert [b.layout for b in layouts] == ["own", "assistants-thread-export/v1"]
    unread = Thread.objects.get(thread_id=demo.UNREAD_THREAD)
    assert (unread.status, unread.error_kind) == ("failed", ErrorKind.NOT_EXPORTED)
    figures = coverage.for_migration()
    assert figures.count("unlisted") == demo.EXPORT_ONLY_THREADS
    assert figures.count("export_errors") >= 2  # the unread thread, and one with lost parts
    ids_batch = ImportBatch.objects.get(filename="demo-thread-ids.csv")
    exported = Thread.objects.filter(thread_id__in=demo_ids).exclude(data=None).count()
    assert exported == 2 * 3  # 30 threads: 3 in each export
    assert ids_batch.fetch_queued == len(demo_ids) + 1 - exported

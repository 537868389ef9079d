"""Intake checks a bundle against what conversion and the database need before storing it: each
bad input is reported by file, line and thread id with its precise reason, and the rest loads."""

import copy
import json
import zipfile

import pytest
from django.db import DataError

from migrations_app import bulk, intake
from migrations_app.conversion import convert_thread
from migrations_app.intake import exports
from migrations_app.models import Assistant, ImportBatch, Message, RunStep, Thread
from migrations_app.preview import preview_thread
from tests.factories import source_message, source_thread

pytestmark = pytest.mark.django_db


def bundle(thread_id="thread_good", messages=None, steps=None):
    return {
        "thread": source_thread(thread_id),
        "messages": messages
        if messages is not None
        else [
            source_message("msg_1", thread_id, "hello"),
            source_message("msg_2", thread_id, "hi"),
        ],
        "runs": [],
        "run_steps": steps or [],
    }


def broken(change):
    """A valid bundle for thread_bad, changed by `change(bundle)`."""
    bad = bundle("thread_bad")
    change(bad)
    return bad


def load_lines(tmp_path, *bundles):
    """Load a .jsonl of a good thread, then the given bundles (lines 2, 3, …), then another
    good thread; returns the batch."""
    lines = [bundle("thread_first"), *bundles, bundle("thread_last")]
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps(b) + "\n" for b in lines))
    return intake.load_export(path)


def the_error(batch):
    """The one error of a batch whose first and last threads loaded."""
    assert batch.status == ImportBatch.Status.DONE
    assert set(Thread.objects.values_list("thread_id", flat=True)) == {
        "thread_first",
        "thread_last",
    }
    assert batch.new_count == 2
    assert batch.invalid_count == 1, batch.errors
    (error,) = batch.errors
    assert (error["file"], error["line"]) == ("export.jsonl", 2)
    return error["message"]


def set_content(block):
    def change(b):
        b["messages"][0]["content"] = [block]

    return change


# --- each bad input: its precise error, and the rest loads ---------------------------------------
def test_a_user_text_block_that_is_a_plain_string_is_refused(tmp_path):
    batch = load_lines(tmp_path, broken(set_content({"type": "text", "text": "plain"})))
    assert the_error(batch) == (
        "thread_bad: messages[0] (msg_1).content[0].text is a string: a text block is "
        '{"type": "text", "text": {"value": "…", "annotations": […]}}'
    )


def test_a_text_block_without_annotations_is_refused(tmp_path):
    batch = load_lines(tmp_path, broken(set_content({"type": "text", "text": {"value": "x"}})))
    assert the_error(batch) == (
        "thread_bad: messages[0] (msg_1).content[0].text.annotations is null: expected a list"
    )


def test_an_image_url_without_url_is_refused(tmp_path):
    block = {"type": "image_url", "image_url": {"detail": "low"}}
    batch = load_lines(tmp_path, broken(set_content(block)))
    assert the_error(batch) == (
        "thread_bad: messages[0] (msg_1).content[0].image_url.url is null: "
        "expected a non-empty string"
    )


def test_an_image_file_without_file_id_is_refused(tmp_path):
    block = {"type": "image_file", "image_file": {}}
    batch = load_lines(tmp_path, broken(set_content(block)))
    assert the_error(batch) == (
        "thread_bad: messages[0] (msg_1).content[0].image_file.file_id is null: "
        "expected a non-empty string"
    )


def test_an_image_detail_the_api_does_not_know_is_refused(tmp_path):
    block = {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "huge"}}
    batch = load_lines(tmp_path, broken(set_content(block)))
    assert the_error(batch) == (
        "thread_bad: messages[0] (msg_1).content[0].image_url.detail is 'huge': "
        "expected auto, low or high"
    )


def test_created_at_as_a_string_is_refused(tmp_path):
    bad = broken(lambda b: b["messages"][1].update(created_at="1717000000"))
    assert the_error(load_lines(tmp_path, bad)) == (
        "thread_bad: messages[1] (msg_2).created_at is a string ('1717000000'): "
        "expected an integer of Unix seconds"
    )


def test_created_at_in_milliseconds_is_refused(tmp_path):
    bad = broken(lambda b: b["messages"][0].update(created_at=1717000000123))
    assert the_error(load_lines(tmp_path, bad)) == (
        "thread_bad: messages[0] (msg_1).created_at is 1717000000123, which looks like "
        "milliseconds: expected whole Unix seconds (e.g. 1717000000)"
    )


def test_created_at_with_a_fraction_is_refused(tmp_path):
    bad = broken(lambda b: b["messages"][0].update(created_at=1717000000.5))
    assert the_error(load_lines(tmp_path, bad)) == (
        "thread_bad: messages[0] (msg_1).created_at is 1717000000.5, not a whole number: "
        "expected an integer of Unix seconds"
    )


def test_a_message_id_over_64_characters_is_refused(tmp_path):
    bad = broken(lambda b: b["messages"][0].update(id="msg_" + "x" * 61))
    assert the_error(load_lines(tmp_path, bad)) == (
        "thread_bad: messages[0].id is 65 characters long (at most 64)"
    )


def test_a_thread_id_over_64_characters_is_refused(tmp_path):
    bad = broken(lambda b: b["thread"].update(id="thread_" + "x" * 58))
    message = the_error(load_lines(tmp_path, bad))
    assert message.endswith("is not a thread id (expected thread_…, at most 64 characters)")


def tool_step(step_id="step_1", run_id="run_1", **call):
    return {
        "id": step_id,
        "run_id": run_id,
        "type": "tool_calls",
        "created_at": 1,
        "step_details": {
            "type": "tool_calls",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": "{}", "output": "ok", **call},
                }
            ],
        },
    }


def test_a_run_step_or_run_id_over_64_characters_is_refused(tmp_path):
    long_step = broken(lambda b: b["run_steps"].append(tool_step(step_id="step_" + "s" * 60)))
    long_run = broken(lambda b: b["run_steps"].append(tool_step(run_id="run_" + "r" * 61)))
    long_run["thread"]["id"] = "thread_bad2"
    batch = load_lines(tmp_path, long_step, long_run)
    assert [e["message"] for e in batch.errors] == [
        "thread_bad: run_steps[0].id is 65 characters long (at most 64)",
        "thread_bad2: run_steps[0] (step_1).run_id is 65 characters long (at most 64)",
    ]
    assert batch.new_count == 2


def test_a_function_call_whose_output_is_not_text_is_refused(tmp_path):
    bad = broken(lambda b: b["run_steps"].append(tool_step(output={"ok": True})))
    assert the_error(load_lines(tmp_path, bad)) == (
        "thread_bad: run_steps[0] (step_1).step_details.tool_calls[0].function.output is an "
        "object ({'ok': True}): expected a string or null"
    )


def test_duplicate_message_ids_in_a_thread_are_refused(tmp_path):
    bad = broken(lambda b: b["messages"][1].update(id="msg_1"))
    assert the_error(load_lines(tmp_path, bad)) == (
        "thread_bad: messages[1].id 'msg_1' appears twice in the thread"
    )


def test_a_bundle_without_a_messages_key_is_refused_not_migrated_empty(tmp_path):
    bad = broken(lambda b: b.pop("messages"))
    assert the_error(load_lines(tmp_path, bad)) == (
        "thread_bad: no 'messages' key: a thread without its messages would migrate as an empty "
        'conversation (an empty thread has "messages": [])'
    )


def test_an_empty_thread_with_an_empty_message_list_loads():
    stored = intake.store_bundles([bundle("thread_empty", messages=[])])
    assert stored.new == ["thread_empty"]
    assert Thread.objects.get().message_count == 0


def test_a_role_other_than_user_or_assistant_is_refused(tmp_path):
    bad = broken(lambda b: b["messages"][0].update(role="system"))
    assert the_error(load_lines(tmp_path, bad)) == (
        "thread_bad: messages[0] (msg_1).role is 'system': expected user or assistant"
    )


def test_a_run_id_that_is_not_a_string_is_refused(tmp_path):
    bad = broken(lambda b: b["messages"][0].update(run_id=["run_1"]))
    assert the_error(load_lines(tmp_path, bad)) == (
        "thread_bad: messages[0] (msg_1).run_id is a list (['run_1']): expected a string"
    )


def test_thread_metadata_that_is_not_an_object_is_refused(tmp_path):
    bad = broken(lambda b: b["thread"].update(metadata=["a", "b"]))
    assert the_error(load_lines(tmp_path, bad)) == (
        "thread_bad: thread.metadata is a list: expected an object"
    )


# --- NUL characters -------------------------------------------------------------------------------
def test_nul_characters_are_replaced_with_a_warning_and_the_thread_loads(tmp_path):
    bad = broken(lambda b: b["messages"][0]["content"][0]["text"].update(value="a\x00b\x00"))
    bad["thread"]["metadata"] = {"note": "x\x00"}
    batch = load_lines(tmp_path, bad)
    assert batch.invalid_count == 0 and batch.new_count == 3
    stored = Message.objects.get(thread__thread_id="thread_bad", message_id="msg_1")
    assert stored.data["content"][0]["text"]["value"] == "a\ufffdb\ufffd"
    assert Thread.objects.get(thread_id="thread_bad").data["metadata"] == {"note": "x\ufffd"}
    assert [(w["file"], w["line"], w["message"]) for w in batch.warnings] == [
        (
            "export.jsonl",
            2,
            "thread_bad: thread object: 1 NUL character(s) replaced with U+FFFD (the database "
            "cannot store U+0000)",
        ),
        (
            "export.jsonl",
            2,
            "thread_bad: message msg_1: 2 NUL character(s) replaced with U+FFFD (the database "
            "cannot store U+0000)",
        ),
    ]


def test_a_fetched_thread_with_nul_characters_says_so_in_its_history(sandbox):
    thread_id = next(iter(sandbox.state.threads))
    sandbox.state.threads[thread_id]["metadata"] = {"k": "\x00"}
    Thread.objects.create(thread_id=thread_id)
    attempt = intake.fetch_for_staff(thread_id)
    assert attempt.outcome == "succeeded"
    assert attempt.detail["changed"] == [
        "thread object: 1 NUL character(s) replaced with U+FFFD (the database cannot store U+0000)"
    ]


def test_text_that_is_not_valid_unicode_is_refused_not_crashed_on():
    bad = bundle("thread_surrogate")
    bad["messages"][0]["content"][0]["text"]["value"] = "\ud800"
    stored = intake.store_bundles([bad, bundle("thread_fine")])
    assert stored.new == ["thread_fine"]
    assert stored.rejected == [
        (
            "thread_surrogate",
            "message msg_1 cannot be stored: str is not valid UTF-8: surrogates not allowed",
        )
    ]


# --- unreadable files -----------------------------------------------------------------------------
def write_directory(root, *bundles):
    (root / "threads").mkdir(parents=True)
    for b in bundles:
        (root / "threads" / f"{b['thread']['id']}.json").write_text(json.dumps(b))
    return root


def test_a_non_utf8_file_in_a_directory_is_named_and_the_rest_loads(tmp_path):
    root = write_directory(tmp_path / "export", bundle("thread_a"), bundle("thread_b"))
    latin1 = json.dumps(bundle("thread_latin1"), ensure_ascii=False).encode("latin-1")
    (root / "threads" / "thread_latin1.json").write_bytes(latin1.replace(b"hello", b"h\xe9"))
    offset = latin1.replace(b"hello", b"h\xe9").index(b"\xe9")
    batch = intake.load_export(root)
    assert batch.status == ImportBatch.Status.DONE
    assert sorted(Thread.objects.values_list("thread_id", flat=True)) == ["thread_a", "thread_b"]
    assert batch.errors == [
        {
            "file": "threads/thread_latin1.json",
            "line": None,
            "message": f"not UTF-8 text (byte 0xe9 at offset {offset})",
        }
    ]


def test_a_non_utf8_line_in_a_jsonl_is_named_by_line_and_the_rest_loads(tmp_path):
    path = tmp_path / "mixed.jsonl"
    good = json.dumps(bundle("thread_a")).encode()
    bad = (
        json.dumps(bundle("thread_b")).replace("hello", "HELLO").encode().replace(b"HELLO", b"\xff")
    )
    path.write_bytes(good + b"\n" + bad + b"\n" + json.dumps(bundle("thread_c")).encode() + b"\n")
    batch = intake.load_export(path)
    assert batch.new_count == 2
    offset = bad.index(b"\xff")
    assert [(e["line"], e["message"]) for e in batch.errors] == [
        (2, f"not UTF-8 text (byte 0xff at offset {offset})")
    ]


def test_a_non_utf8_member_of_a_zip_is_named_and_the_rest_loads(tmp_path):
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("export/threads/thread_a.json", json.dumps(bundle("thread_a")))
        out.writestr("export/threads/thread_bad.json", b"\xfe\xff{}")
    batch = intake.load_export(archive)
    assert batch.new_count == 1
    assert [(e["file"], e["message"][:14]) for e in batch.errors] == [
        ("export/threads/thread_bad.json", "not UTF-8 text")
    ]


def test_a_utf8_bom_at_the_start_of_a_file_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(bundle("thread_a")).encode() + b"\n")
    assert intake.load_export(path).new_count == 1


def test_a_line_longer_than_the_document_limit_is_reported_without_being_held(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(exports, "MAX_DOCUMENT_BYTES", 2000)
    monkeypatch.setattr(exports, "READ_CHUNK", 300)
    path = tmp_path / "long.jsonl"
    long_bundle = bundle("thread_long")
    long_bundle["messages"][0]["content"][0]["text"]["value"] = "x" * 5000
    lines = [bundle("thread_a"), long_bundle, bundle("thread_b")]
    path.write_text("".join(json.dumps(b) + "\n" for b in lines))
    batch = intake.load_export(path)
    assert sorted(Thread.objects.values_list("thread_id", flat=True)) == ["thread_a", "thread_b"]
    assert [(e["line"], e["message"]) for e in batch.errors] == [(2, "line longer than 2 KB")]


# --- the database refuses a bundle anyway -------------------------------------------------------
def test_a_bundle_the_database_refuses_is_isolated_and_reported_without_a_traceback(
    tmp_path, monkeypatch
):
    real = bulk.copy_rows

    def refuse_one_message(model, columns, rows):
        rows = list(rows)
        if any("msg_refused" in row for row in rows):
            raise DataError("value too long for type character varying(64)\nCONTEXT: COPY …")
        return real(model, columns, rows)

    monkeypatch.setattr(bulk, "copy_rows", refuse_one_message)
    refused = bundle("thread_bad")
    refused["messages"][0]["id"] = "msg_refused"
    batch = load_lines(tmp_path, refused)
    assert the_error(batch) == (
        "thread_bad: the database refused it (value too long for type character varying(64)); "
        "nothing of it was stored"
    )
    assert Message.objects.count() == 4, "the other threads of its chunk are stored whole"


# --- warnings are known once a thread is mirrored -------------------------------------------------
def test_warnings_and_item_count_are_computed_when_a_thread_is_mirrored():
    annotated = bundle("thread_annotated")
    assistant = source_message("msg_3", "thread_annotated", "see 【1:0†source】", role="assistant")
    assistant["content"][0]["text"]["annotations"] = [
        {"type": "file_citation", "text": "【1:0†source】", "file_citation": {"file_id": "file-1"}}
    ]
    annotated["messages"].append(assistant)
    annotated["messages"].append({**source_message("msg_4", "thread_annotated", ""), "content": []})
    intake.store_bundles([annotated])
    thread = Thread.objects.get()
    preview = preview_thread(thread)
    assert (thread.warning_count, thread.items_total) == (2, 3)
    assert (len(preview.warnings), len(preview.items)) == (2, 3)


def test_loading_again_replaces_messages_and_steps_without_duplicates():
    first = bundle("thread_a", steps=[tool_step()])
    intake.store_bundles([first])
    second = copy.deepcopy(first)
    second["messages"].pop()
    stored = intake.store_bundles([second])
    assert stored.updated == ["thread_a"]
    assert Message.objects.count() == 1 and RunStep.objects.count() == 1
    assert Thread.objects.get().message_count == 1


def test_accepted_bundles_convert_as_stored():
    b = bundle("thread_a", steps=[tool_step()])
    b["run_steps"].append({"id": "step_m", "type": "message_creation", "created_at": "whenever"})
    intake.store_bundles([b])
    thread = Thread.objects.get()
    tool_calls = [s for s in b["run_steps"] if s["type"] == "tool_calls"]
    assert preview_thread(thread) == convert_thread(b["thread"], b["messages"], tool_calls)


def test_an_invalid_assistant_in_an_export_is_reported_and_the_others_load(tmp_path):
    root = write_directory(tmp_path / "export", bundle("thread_a"))
    assistants = [
        {"id": "asst_ok", "name": "Fine", "model": "gpt-4o", "tools": []},
        {"id": "asst_bad", "tools": "code_interpreter"},
        {"id": "asst_nul", "name": "a\x00b", "tools": []},
    ]
    (root / "assistants.json").write_text(json.dumps(assistants))
    batch = intake.load_export(root)
    assert sorted(Assistant.objects.values_list("assistant_id", flat=True)) == [
        "asst_nul",
        "asst_ok",
    ]
    assert Assistant.objects.get(assistant_id="asst_nul").name == "a\ufffdb"
    assert [(e["file"], e["message"]) for e in batch.errors] == [
        (
            "assistants.json",
            "assistant asst_bad: asst_bad.tools is a string: expected a list",
        )
    ]

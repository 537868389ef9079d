"""Exports in both layouts the console reads: the console's own and assistants-thread-export/v1
(the public exporter's). The v1 files are written by the sandbox's exporter
(migrations_app/sandbox/exporter.py), from the layout's public description."""

import json
import zipfile

import pytest
from django.core.management import call_command
from django.urls import reverse

from migrations_app import intake, tallies
from migrations_app.conversion import convert_thread
from migrations_app.intake.layouts import v1
from migrations_app.models import (
    Attempt,
    ErrorKind,
    ExportState,
    ImportBatch,
    RunStep,
    Thread,
    ThreadStatus,
)
from migrations_app.preview import preview_thread
from migrations_app.sandbox import generate_dataset
from migrations_app.sandbox.exporter import (
    V1Export,
    file_ids,
    thread_record,
    write_own_jsonl,
    write_v1_directory,
    write_v1_jsonl,
    write_v1_zip,
)
from tests.factories import succeeded

pytestmark = pytest.mark.django_db
EXPORTED_AT = "2026-08-20T14:03:11Z"


@pytest.fixture(scope="module")
def dataset():
    assistants, bundles = generate_dataset(seed=11, thread_count=24)
    return assistants, list(bundles)


def with_tool_calls(bundles):
    return [b for b in bundles if any(s["type"] == "tool_calls" for s in b["run_steps"])]


def function_calls(items):
    return [item for item in items if item["type"] == "function_call"]


def items_by_thread():
    return {
        thread.thread_id: preview_thread(thread).items
        for thread in Thread.objects.exclude(data=None).order_by("thread_id")
    }


# --- v1 converts exactly like our own layout ------------------------------------------------------
def test_a_v1_record_is_the_bundle_of_our_own_layout_and_converts_to_the_same_items(dataset):
    _, bundles = dataset
    for bundle in bundles:
        converted = v1.to_bundle(thread_record(bundle, EXPORTED_AT))
        ours = convert_thread(bundle["thread"], bundle["messages"], bundle["run_steps"])
        theirs = convert_thread(converted["thread"], converted["messages"], converted["run_steps"])
        assert theirs.items == ours.items
        assert [str(w) for w in theirs.warnings] == [str(w) for w in ours.warnings]
        assert converted["runs"] == bundle["runs"]  # the runs stay, without their steps
    assert any(function_calls(convert_thread(b["thread"], b["messages"], b["run_steps"]).items)
               for b in bundles)  # fmt: skip


@pytest.mark.parametrize("form", ["directory", "zip with a top-level folder", "zip", "jsonl"])
def test_a_v1_export_loads_to_exactly_the_items_of_our_own_layout(tmp_path, dataset, form):
    assistants, bundles = dataset
    intake.load_export(write_own_jsonl(tmp_path / "own.jsonl", bundles))
    ours = items_by_thread()
    Thread.objects.all().delete()

    export = V1Export(bundles, assistants, EXPORTED_AT)
    path = {
        "directory": lambda: write_v1_directory(tmp_path / "v1", export),
        "zip with a top-level folder": lambda: write_v1_zip(tmp_path / "v1.zip", export),
        "zip": lambda: write_v1_zip(tmp_path / "v1.zip", export, top_folder=""),
        "jsonl": lambda: write_v1_jsonl(tmp_path / "v1.jsonl", export),
    }[form]()
    batch = intake.load_export(path)

    assert batch.status == ImportBatch.Status.DONE
    assert (batch.new_count, batch.invalid_count, batch.errors) == (len(bundles), 0, [])
    assert batch.layout == v1.SCHEMA
    assert items_by_thread() == ours
    assert sum(len(function_calls(items)) for items in ours.values()) > 0  # tool calls included
    assert RunStep.objects.count() == sum(len(b["run_steps"]) for b in bundles)


def test_an_unzipped_export_given_by_its_parent_folder_loads(tmp_path, dataset):
    assistants, bundles = dataset
    write_v1_directory(tmp_path / "parent" / "assistants-export", V1Export(bundles[:3], assistants))
    batch = intake.load_export(tmp_path / "parent")
    assert batch.new_count == 3
    assert batch.manifest["threads_exported"] == 3


def test_the_manifest_is_shown_with_the_batch(tmp_path, dataset):
    assistants, bundles = dataset
    batch = intake.load_export(
        write_v1_zip(tmp_path / "x.zip", V1Export(bundles[:2], assistants, EXPORTED_AT))
    )
    assert batch.manifest == {
        "script_version": "1.4.0", "exported_at": EXPORTED_AT, "endpoint": "openai",
        "base_url": "https://api.openai.com/v1", "assistants_count": len(assistants),
        "threads_requested": 2, "threads_exported": 2, "threads_failed": 0,
    }  # fmt: skip


# --- nothing dropped in silence -------------------------------------------------------------------
def test_each_exporter_error_is_a_warning_on_its_thread(tmp_path, dataset):
    assistants, bundles = dataset
    bundle = with_tool_calls(bundles)[0]
    thread_id = bundle["thread"]["id"]
    lost_run = bundle["run_steps"][0]["run_id"]
    lost_file = "file-GoneGoneGoneGoneGoneGone"
    bundle = {**bundle, "messages": [*bundle["messages"]]}
    bundle["messages"][0] = {
        **bundle["messages"][0],
        "attachments": [{"file_id": lost_file, "tools": [{"type": "code_interpreter"}]}],
    }
    export = V1Export(
        [bundle], assistants, EXPORTED_AT,
        lost_steps={thread_id: [lost_run]}, lost_files={thread_id: [lost_file]},
    )  # fmt: skip
    intake.load_export(write_v1_zip(tmp_path / "x.zip", export))

    thread = Thread.objects.get(thread_id=thread_id)
    warnings = [str(w) for w in preview_thread(thread).warnings]
    assert (
        f"{lost_run}: its steps were not exported (not_found_or_expired: Error code: 404 - run "
        "steps are no longer available), so its tool calls are missing"
    ) in warnings
    assert any(
        w.startswith(f"{lost_file}: the exporter could not read this file") for w in warnings
    )
    assert thread.warning_count == len(warnings)
    assert thread.export_state == ExportState.ERRORS
    assert not RunStep.objects.filter(thread=thread, run_id=lost_run).exists()


def test_the_exporter_errors_stay_warnings_after_a_migration_recounts_them(tmp_path, dataset):
    """The upload recounts a thread's warnings from its preview: the exporter's are in it."""
    assistants, bundles = dataset
    bundle = with_tool_calls(bundles)[0]
    run = bundle["run_steps"][0]["run_id"]
    export = V1Export([bundle], assistants, lost_steps={bundle["thread"]["id"]: [run]})
    intake.load_export(write_v1_directory(tmp_path / "v1", export))
    thread = Thread.objects.get(thread_id=bundle["thread"]["id"])
    assert any(w.source == run for w in preview_thread(thread).warnings)


def test_the_files_metadata_is_kept_in_the_mirror(tmp_path, dataset):
    assistants, bundles = dataset
    bundle = next(b for b in bundles if file_ids(b))
    intake.load_export(write_v1_directory(tmp_path / "v1", V1Export([bundle], assistants)))
    thread = Thread.objects.get(thread_id=bundle["thread"]["id"])
    files = thread.export_info["files"]
    assert sorted(files) == sorted(file_ids(bundle))
    assert {"filename", "purpose", "bytes"} <= set(next(iter(files.values())))
    assert thread.export_info["exported_at"] == "2026-08-20T14:03:11Z"


# --- threads the exporter could not read ----------------------------------------------------------
def test_threads_the_exporter_could_not_read_are_registered_as_failed(tmp_path, dataset):
    assistants, bundles = dataset
    export = V1Export(
        bundles[:3], assistants, EXPORTED_AT,
        failed={"thread_Unreadable000000000000000": "not_found_or_deleted",
                "thread_Unreadable111111111111111": "fetch_failed"},
    )  # fmt: skip
    batch = intake.load_export(write_v1_zip(tmp_path / "x.zip", export))

    gone = Thread.objects.get(thread_id="thread_Unreadable000000000000000")
    assert (gone.status, gone.error_kind) == (ThreadStatus.FAILED, ErrorKind.NOT_EXPORTED)
    assert gone.error_message == (
        f"not exported: not_found_or_deleted, according to the export of {EXPORTED_AT}"
    )
    assert gone.get_error_kind_display() == "Not in the export"
    assert gone.export_state == ExportState.UNREAD
    assert batch.not_exported_count == 2
    assert tallies.status_counts() == {"pending": 3, "failed": 2}
    attempt = gone.history.get()
    assert (attempt.action, attempt.outcome) == (Attempt.Action.IMPORT, Attempt.Outcome.FAILED)
    assert "No thread found" in attempt.detail["detail"]


def test_a_v1_jsonl_registers_its_unread_records_too(tmp_path, dataset):
    export = V1Export(dataset[1][:1], failed={"thread_UnreadInJsonl00000000000": "fetch_failed"})
    batch = intake.load_export(write_v1_jsonl(tmp_path / "x.jsonl", export))
    assert batch.not_exported_count == 1
    thread = Thread.objects.get(thread_id="thread_UnreadInJsonl00000000000")
    assert thread.error_message.startswith("not exported: fetch_failed, according to the export")


def test_an_unread_thread_never_overwrites_one_mirrored_running_or_migrated(tmp_path, dataset):
    assistants, bundles = dataset
    mirrored_id, running_id, migrated_id = (b["thread"]["id"] for b in bundles[:3])
    intake.store_bundles(bundles[:3])
    Thread.objects.filter(thread_id=running_id).update(status="running", lease_owner="w")
    succeeded(Thread.objects.get(thread_id=migrated_id), "conv_done")
    intake.import_thread_ids(["thread_OnlyListed00000000000000"], batch=ImportBatch(source="paste"))
    listed_id = "thread_OnlyListed00000000000000"
    named = (mirrored_id, running_id, migrated_id, listed_id)
    export = V1Export([], assistants, failed={t: "not_found_or_deleted" for t in named})
    batch = intake.load_export(write_v1_directory(tmp_path / "v1", export))

    states = dict(Thread.objects.values_list("thread_id", "status"))
    assert states[mirrored_id] == "pending" and states[running_id] == "running"
    assert states[migrated_id] == "succeeded" and states[listed_id] == "failed"
    assert Thread.objects.get(thread_id=mirrored_id).data is not None
    kept = [w["message"] for w in batch.warnings if "kept as it is" in w["message"]]
    assert len(kept) == 3
    assert batch.not_exported_count == 4


def test_a_thread_not_in_one_export_and_found_in_another_is_pending_again(tmp_path, dataset):
    assistants, bundles = dataset
    thread_id = bundles[0]["thread"]["id"]
    intake.load_export(
        write_v1_directory(tmp_path / "a", V1Export([], assistants, failed={thread_id: "x"}))
    )
    assert Thread.objects.get(thread_id=thread_id).status == "failed"
    intake.load_export(write_v1_directory(tmp_path / "b", V1Export(bundles[:1], assistants)))
    thread = Thread.objects.get(thread_id=thread_id)
    assert (thread.status, thread.error_kind, thread.export_state) == ("pending", "", "whole")


def test_an_export_with_errors_never_replaces_a_mirror_without_them(tmp_path, dataset):
    assistants, bundles = dataset
    bundle = with_tool_calls(bundles)[0]
    thread_id, run = bundle["thread"]["id"], bundle["run_steps"][0]["run_id"]
    intake.load_export(write_v1_directory(tmp_path / "whole", V1Export([bundle], assistants)))
    steps = RunStep.objects.filter(thread__thread_id=thread_id).count()
    partial = V1Export([bundle], assistants, lost_steps={thread_id: [run]})
    batch = intake.load_export(write_v1_directory(tmp_path / "partial", partial))
    thread = Thread.objects.get(thread_id=thread_id)
    assert RunStep.objects.filter(thread=thread).count() == steps
    assert "errors" not in thread.export_info
    assert thread.export_state == ExportState.WHOLE
    assert batch.skipped_count == 1
    assert "kept the mirror it has, which lacks nothing" in batch.warnings[0]["message"]


def test_a_whole_export_replaces_a_mirror_with_exporter_errors(tmp_path, dataset):
    assistants, bundles = dataset
    bundle = with_tool_calls(bundles)[0]
    thread_id, run = bundle["thread"]["id"], bundle["run_steps"][0]["run_id"]
    partial = V1Export([bundle], assistants, lost_steps={thread_id: [run]})
    intake.load_export(write_v1_directory(tmp_path / "partial", partial))
    intake.load_export(write_own_jsonl(tmp_path / "own.jsonl", [bundle]))
    thread = Thread.objects.get(thread_id=thread_id)
    assert "errors" not in (thread.export_info or {})
    assert thread.export_state == ExportState.WHOLE
    assert RunStep.objects.filter(thread=thread, run_id=run).exists()


# --- one clear error for a layout the console does not read ---------------------------------------
def test_a_jsonl_in_an_unknown_layout_gets_one_error_naming_the_layouts(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"thread_{i}", "items": []}) + "\n" for i in range(5))
    )
    with pytest.raises(intake.IntakeError) as refused:
        intake.load_export(path)
    message = str(refused.value)
    assert message.startswith(
        "other.jsonl (line 1) is in a layout the console does not read; nothing was loaded. "
        "The console reads 2 layouts: 1) the console's own layout"
    )
    assert "the console's own layout" in message and "assistants-thread-export/v1" in message
    batch = ImportBatch.objects.get()
    assert batch.status == ImportBatch.Status.FAILED and len(batch.errors) == 1


def test_a_newer_manifest_schema_is_refused_whole_naming_what_it_says(tmp_path, dataset):
    root = write_v1_directory(tmp_path / "v2", V1Export(dataset[1][:2]))
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(
        json.dumps({**manifest, "export_schema": "assistants-export-manifest/v2"})
    )
    with pytest.raises(intake.IntakeError, match=r"export_schema 'assistants-export-manifest/v2'"):
        intake.load_export(root)
    assert Thread.objects.count() == 0


def test_a_thread_record_of_another_schema_inside_a_v1_export_is_reported_by_file(
    tmp_path, dataset
):
    root = write_v1_directory(tmp_path / "v1", V1Export(dataset[1][:2]))
    odd = root / "threads" / f"{dataset[1][0]['thread']['id']}.json"
    odd.write_text(json.dumps({**json.loads(odd.read_text()), "export_schema": "something/v9"}))
    batch = intake.load_export(root)
    assert batch.new_count == 1
    assert batch.errors[0]["file"] == f"threads/{odd.name}"
    assert (
        "not in a layout the console reads (export_schema 'something/v9')"
        in (batch.errors[0]["message"])
    )


def test_a_v1_record_whose_thread_id_differs_from_its_thread_is_refused_in_words(tmp_path, dataset):
    record = thread_record(dataset[1][0], EXPORTED_AT)
    record["thread_id"] = "thread_SomethingElse000000000000"
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(record) + "\n")
    batch = intake.load_export(path)
    assert batch.errors[0]["message"].startswith("thread_SomethingElse000000000000: thread.id ")


def test_manifest_counts_that_differ_from_the_files_and_its_notes_are_reported(tmp_path, dataset):
    export = V1Export(dataset[1][:3], notes=["2 assistants were skipped"])
    path = write_v1_zip(tmp_path / "x.zip", export)
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if "/threads/" in n]
        kept = {n: archive.read(n) for n in archive.namelist() if n != names[0]}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in kept.items():
            archive.writestr(name, data)
    batch = intake.load_export(path)
    said = [w["message"] for w in batch.warnings]
    assert "the exporter's note: 2 assistants were skipped" in said
    assert (
        "the manifest says 3 threads were exported; the export holds 2 thread files with a "
        "thread" in said
    )


def test_load_export_prints_the_threads_not_in_the_export(tmp_path, dataset, capsys):
    export = V1Export(dataset[1][:1], failed={"thread_Unreadable000000000000000": "x"})
    call_command("load_export", str(write_v1_zip(tmp_path / "x.zip", export)))
    assert "1 not in the export (registered as failed)" in capsys.readouterr().out


# --- what staff can do about a thread not in the export -------------------------------------------
@pytest.fixture
def unread_thread(tmp_path, dataset):
    export = V1Export(dataset[1][:1], failed={"thread_Unreadable000000000000000": "fetch_failed"})
    intake.load_export(write_v1_directory(tmp_path / "v1", export))
    return Thread.objects.get(thread_id="thread_Unreadable000000000000000")


def test_retry_is_never_offered_for_a_thread_not_in_the_export(unread_thread):
    from migrations_app import actions, states

    plan = actions.plan("retry", Thread.objects.filter(pk=unread_thread.pk))
    assert plan.eligible == 0
    assert plan.skipped == {
        "not in the export (fetch it from a source, or load an export that holds it)": 1
    }
    assert "retry" not in states.applicable_actions(unread_thread.pk)
    assert "migrate" not in states.applicable_actions(unread_thread.pk)


def test_with_a_source_the_remedy_is_fetch_again(unread_thread, sandbox, client, operator):
    page = client.get(reverse("admin:migrations_app_thread_change", args=[unread_thread.pk]))
    assert page.context["remedy"] == (
        "Fetch it again from the source, or load an export that holds it."
    )
    assert [button.name for button in page.context["buttons"]] == ["fetch"]
    dashboard = client.get(reverse("admin:migrations_app_dashboard")).context
    group = next(f for f in dashboard["failures"] if f["error_kind"] == "not_exported")
    assert group["remedy"] == ("fetch_selected", "Fetch this group again")
    assert group["kind_label"] == "Not in the export"


def test_without_a_source_the_remedy_is_to_load_an_export(unread_thread, client, operator,
                                                          settings):  # fmt: skip
    settings.ASSISTANTS_API_KEY, settings.ASSISTANTS_BASE_URL = "sk-real", None
    page = client.get(reverse("admin:migrations_app_thread_change", args=[unread_thread.pk]))
    assert page.context["remedy"].startswith("Load an export that holds it (Import threads)")
    assert page.context["buttons"] == []
    dashboard = client.get(reverse("admin:migrations_app_dashboard")).context
    group = next(f for f in dashboard["failures"] if f["error_kind"] == "not_exported")
    assert group["remedy"] is None


def test_the_thread_page_shows_the_exporter_warnings_and_the_files(tmp_path, dataset, client,
                                                                   operator):  # fmt: skip
    assistants, bundles = dataset
    bundle = next(b for b in with_tool_calls(bundles) if file_ids(b))
    run = bundle["run_steps"][0]["run_id"]
    export = V1Export([bundle], assistants, EXPORTED_AT, lost_steps={bundle["thread"]["id"]: [run]})
    batch = intake.load_export(write_v1_directory(tmp_path / "v1", export))
    thread = Thread.objects.get(thread_id=bundle["thread"]["id"])
    html = client.get(reverse("admin:migrations_app_thread_change", args=[thread.pk])).content
    html = html.decode()
    assert "In the exports: <strong>Exported with errors</strong>" in html
    assert f"mirror from the {v1.SCHEMA} export of {EXPORTED_AT}, with 1 exporter error" in html
    assert f"{run}: its steps were not exported (not_found_or_expired" in html
    assert f'href="/admin/migrations_app/importbatch/{batch.pk}/change/"' in html
    first = thread.export_info["files"][file_ids(bundle)[0]]
    assert f"<td>{first['filename']}</td><td>{first['purpose']}</td>" in html


def test_a_zip_holding_no_export_is_refused_naming_the_layouts(tmp_path):
    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("holiday/beach.jpg", b"\xff\xd8")
    with pytest.raises(intake.IntakeError, match=r"photos.zip holds nothing to load: .* 2 layouts"):
        intake.load_export(path)
    assert ImportBatch.objects.get().status == ImportBatch.Status.FAILED


# --- the v1 reader alone --------------------------------------------------------------------------
def read_v1(*documents):
    """The records of these v1 documents, as the lines of a .jsonl."""
    from migrations_app.intake import layouts

    items = [("x.jsonl", number, d, None) for number, d in enumerate(documents, 1)]
    return list(layouts.read(items, "x.jsonl"))


def test_a_nested_step_without_its_run_id_gets_its_runs(dataset):
    record = thread_record(with_tool_calls(dataset[1])[0], EXPORTED_AT)
    run = next(r for r in record["runs"] if r["steps"])
    run["steps"] = [{k: v for k, v in s.items() if k != "run_id"} for s in run["steps"]]
    bundle = v1.to_bundle(record)
    assert all(s["run_id"] == run["id"] for s in bundle["run_steps"] if s["id"] in
               {x["id"] for x in run["steps"]})  # fmt: skip


def test_a_run_whose_steps_are_not_a_list_is_reported_with_the_thread_id(dataset):
    record = thread_record(dataset[1][0], EXPORTED_AT)
    record["runs"] = [{"id": "run_x", "steps": "none"}]
    _recognized, (_, _, parsed, error) = read_v1(record)
    assert parsed is None
    assert (
        error == f"{record['thread_id']}: runs[0].steps is a string: expected a list of RunStep "
        "objects"
    )


def test_the_layout_is_recognized_once_per_export(dataset):
    from migrations_app.intake.layouts import Recognized

    records = [thread_record(b, EXPORTED_AT) for b in dataset[1][:3]]
    found = [parsed for _, _, parsed, _ in read_v1(*records) if isinstance(parsed, Recognized)]
    assert found == [Recognized(v1.SCHEMA)]


def test_a_zip_made_by_macos_finder_loads_without_its_clutter(tmp_path, dataset):
    path = write_v1_zip(tmp_path / "x.zip", V1Export(dataset[1][:2], dataset[0]))
    with zipfile.ZipFile(path, "a") as archive:
        for name in list(archive.namelist()):
            folder, _, base = name.rpartition("/")
            archive.writestr(f"__MACOSX/{folder}/._{base}", b"\x00\x05\x16\x07Mac OS X")
        archive.writestr("assistants-export/threads/._thread_x.json", b"\x00\x05\x16\x07")
    batch = intake.load_export(path)
    assert (batch.new_count, batch.errors) == (2, [])


def test_a_fetch_replacing_a_v1_mirror_keeps_the_files_and_drops_the_exporter_errors(
    tmp_path, dataset
):
    from migrations_app.intake.source import store_fetched

    assistants, bundles = dataset
    bundle = next(b for b in with_tool_calls(bundles) if file_ids(b))
    thread_id, run = bundle["thread"]["id"], bundle["run_steps"][0]["run_id"]
    export = V1Export([bundle], assistants, EXPORTED_AT, lost_steps={thread_id: [run]})
    intake.load_export(write_v1_directory(tmp_path / "v1", export))
    thread = Thread.objects.get(thread_id=thread_id)
    files = thread.export_info["files"]

    assert not store_fetched(thread, bundle).failure
    thread.refresh_from_db()
    assert thread.export_info == {
        "files": files,
        "files_from": f"the {v1.SCHEMA} export of {EXPORTED_AT}",
    }
    assert not any(w.source == run for w in preview_thread(thread).warnings)
    assert thread.warning_count == len(preview_thread(thread).warnings)
    assert thread.export_state == ExportState.ERRORS  # what the export held, still

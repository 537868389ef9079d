"""The import page, uploads through the default storage with their size and zip limits, the fetch
that follows an id import, and "Sync assistants" — through Django's test client."""

import io
import json
import re
import zipfile
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group, Permission
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from migrations_app import intake, tasks
from migrations_app.intake import exports, uploads
from migrations_app.models import Assistant, ImportBatch, Thread
from tests.factories import source_message, source_thread

pytestmark = pytest.mark.django_db
IMPORT = "admin:migrations_app_importbatch_import"


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    """The default storage in a folder of its own, to see what stays in it."""
    settings.MEDIA_ROOT = str(tmp_path / "storage")
    return tmp_path / "storage"


def stored_files(storage):
    return sorted(p.name for p in storage.rglob("*") if p.is_file())


def batch_page(client, batch):
    return client.get(reverse("admin:migrations_app_importbatch_change", args=[batch.pk]))


def fetch_tasks():
    return sorted(
        q.task["args"][0]
        for q in OrmQ.objects.all()
        if q.func() == "migrations_app.tasks.fetch_from_source"
    )


def bundle_line(thread_id):
    return json.dumps(
        {
            "thread": source_thread(thread_id),
            "messages": [source_message("msg_1", thread_id, "hello")],
            "runs": [],
            "run_steps": [],
        }
    )


# --- the import page fetches what it imported -----------------------------------------------------
def test_pasted_ids_are_queued_for_fetching_and_the_message_says_what_happens_next(
    client, operator, sandbox
):
    known = list(sandbox.state.threads)[:2]
    response = client.post(reverse(IMPORT), {"pasted": "\n".join(known)}, follow=True)
    batch = ImportBatch.objects.get()
    assert fetch_tasks() == sorted(known)
    assert batch.fetch_queued == 2
    text = response.content.decode()
    assert "2 new threads. 2 fetches from the source queued" in text
    assert 'id="fetch-progress"' in text
    assert '<meta http-equiv="refresh"' in text, "the page refreshes while fetches wait"


def test_the_batch_page_counts_fetches_as_they_come_back(client, operator, sandbox):
    known = next(iter(sandbox.state.threads))
    client.post(reverse(IMPORT), {"pasted": f"{known}\nthread_NoSuchThreadAnywhere"})
    batch = ImportBatch.objects.get()
    assert "<b>0</b> fetched" in batch_page(client, batch).content.decode()
    for thread_id in fetch_tasks():
        tasks.fetch_from_source(thread_id)  # what the workers do
    html = batch_page(client, batch).content.decode()
    counts = re.sub(r"<a [^>]*>|</a>", "", html)  # each count is a link to its threads
    assert (
        "2 fetch tasks queued: <b>1</b> fetched, <b>1</b> not found at the source, "
        "<b>0</b> failed, <b>0</b> waiting."
    ) in counts
    assert '<meta http-equiv="refresh"' not in html
    assert Thread.objects.get(thread_id=known).fetched_at is not None


def test_without_a_source_api_ids_are_registered_and_the_message_says_nothing_is_fetched(
    client, operator, settings
):
    settings.ASSISTANTS_API_KEY, settings.ASSISTANTS_BASE_URL = "sk-real", None
    response = client.post(reverse(IMPORT), {"pasted": "thread_a"}, follow=True)
    assert fetch_tasks() == []
    assert "No source API is configured (ASSISTANTS_BASE_URL)" in response.content.decode()
    html = client.get(reverse(IMPORT)).content.decode()
    assert "ids are registered but not fetched" in html


def test_a_never_fetched_thread_shows_not_fetched_instead_of_zero_messages(admin_client):
    Thread.objects.create(thread_id="thread_registered")
    intake.store_bundles([json.loads(bundle_line("thread_mirrored"))])
    html = admin_client.get(reverse("admin:migrations_app_thread_changelist")).content.decode()
    assert html.count("not fetched") == 1
    assert Thread.objects.get(thread_id="thread_registered").fetched_at is None


def test_a_long_pasted_list_is_imported_and_queued_by_a_worker(
    client, operator, sandbox, monkeypatch
):
    monkeypatch.setattr(uploads, "INLINE_FETCH_IMPORT_LIMIT", 100)
    ids = [f"thread_{n:08d}" for n in range(20)]  # over the limit: a worker queues them
    response = client.post(reverse(IMPORT), {"pasted": "\n".join(ids)}, follow=True)
    batch = ImportBatch.objects.get()
    assert (batch.status, batch.source) == (ImportBatch.Status.PENDING, "paste")
    assert "is queued for a worker" in response.content.decode()
    (task,) = OrmQ.objects.all()
    assert task.func() == "migrations_app.tasks.import_file"
    tasks.import_file(*task.task["args"], **task.task["kwargs"])
    batch.refresh_from_db()
    assert (batch.status, batch.new_count, batch.fetch_queued) == ("done", 20, 20)
    assert len(fetch_tasks()) == 20


# --- upload size limits ---------------------------------------------------------------------------
def test_an_id_list_over_its_limit_is_refused_with_a_form_error_and_never_stored(
    client, operator, settings, storage
):
    settings.IMPORT_MAX_ID_LIST_BYTES = 1000
    ids = SimpleUploadedFile("ids.csv", b"thread_id\n" + b"thread_aaaaaaaaaa\n" * 100)
    response = client.post(reverse(IMPORT), {"ids_file": ids})
    assert response.status_code == 200
    html = response.content.decode()
    assert (
        "ids.csv is larger than 1000 bytes; an id list may be at most 1000 bytes "
        "(IMPORT_MAX_ID_LIST_MB). Split it into smaller files."
    ) in html
    assert "Give exactly one" not in html
    assert not ImportBatch.objects.exists() and not Thread.objects.exists()
    assert stored_files(storage) == []


def test_an_export_over_its_limit_is_refused_with_a_form_error(client, operator, settings):
    settings.IMPORT_MAX_EXPORT_BYTES = 100
    export = SimpleUploadedFile("x.jsonl", (bundle_line("thread_a") + "\n").encode())
    html = client.post(reverse(IMPORT), {"export_file": export}).content.decode()
    assert "x.jsonl is larger than 100 bytes; an export may be at most 100 bytes" in html
    assert not ImportBatch.objects.exists()


def test_the_upload_handler_stops_storing_at_the_limit():
    handler = uploads.LimitHandler()
    handler.new_file("ids_file", "ids.csv", "text/csv", None)
    assert handler.receive_data_chunk(b"x" * 10, 0) == b"x" * 10
    with pytest.raises(uploads.SkipFile):
        handler.receive_data_chunk(b"x" * (50 << 20), 10)
    assert "ids.csv is larger than 50 MB" in handler.refused["ids_file"]


# --- uploads through the storage, removed whatever happens ----------------------------------------
def test_an_upload_is_imported_from_the_storage_and_removed(client, operator, storage):
    data = (bundle_line("thread_a") + "\n").encode()
    client.post(reverse(IMPORT), {"export_file": SimpleUploadedFile("x.jsonl", data)})
    assert Thread.objects.get().fetched_at is not None
    assert stored_files(storage) == []
    assert ImportBatch.objects.get().upload_name == ""


def test_a_large_upload_waits_in_the_storage_for_a_worker(client, operator, storage, monkeypatch):
    monkeypatch.setattr(uploads, "INLINE_IMPORT_LIMIT", 10)
    data = (bundle_line("thread_a") + "\n").encode()
    client.post(reverse(IMPORT), {"export_file": SimpleUploadedFile("x.jsonl", data)})
    batch = ImportBatch.objects.get()
    (task,) = OrmQ.objects.all()
    kind, name, filename = task.task["args"]
    assert (kind, filename) == ("export", "x.jsonl")
    assert task.task["kwargs"] == {"user_pk": operator.pk, "batch_pk": batch.pk, "fetch": False}
    assert batch.upload_name == name and default_storage.exists(name)
    assert not name.startswith("/"), "a name in the storage, not a path on the web server"
    tasks.import_file(*task.task["args"], **task.task["kwargs"])
    batch.refresh_from_db()
    assert (batch.status, batch.new_count, batch.upload_name) == ("done", 1, "")
    assert stored_files(storage) == []


def test_the_upload_is_removed_when_its_import_fails_with_any_exception(storage, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(exports, "prepare", crash)
    name = uploads.save(b"%s\n" % bundle_line("thread_a").encode(), "x.jsonl")
    batch = ImportBatch.objects.get(pk=tasks.import_file("export", name, "x.jsonl"))
    assert batch.status == ImportBatch.Status.FAILED
    assert batch.errors[0]["message"].endswith(": disk on fire (RuntimeError)")
    assert stored_files(storage) == []


def test_the_upload_is_removed_when_the_file_is_refused(storage):
    name = uploads.save(b"PK\x03\x04 not really a zip", "x.zip")
    batch = ImportBatch.objects.get(pk=tasks.import_file("export", name, "x.zip"))
    assert batch.status == ImportBatch.Status.FAILED
    assert "x.zip is not a readable zip file" in batch.errors[0]["message"]
    assert stored_files(storage) == []


def test_an_id_list_upload_that_is_not_utf8_fails_its_batch_and_is_removed(storage):
    name = uploads.save(b"thread_a\n\xff\xfe\n", "ids.txt")
    batch = ImportBatch.objects.get(pk=tasks.import_file("ids", name, "ids.txt"))
    assert batch.status == ImportBatch.Status.FAILED
    assert batch.errors[0]["message"].startswith("line 2 is not UTF-8 text (byte 0xff")
    assert not Thread.objects.exists() and stored_files(storage) == []


def test_a_redelivered_import_of_a_closed_batch_does_nothing_but_remove_the_upload(storage):
    batch = ImportBatch.objects.create(source="export", filename="x.jsonl", status="failed")
    name = uploads.save(b"%s\n" % bundle_line("thread_a").encode(), "x.jsonl")
    tasks.import_file("export", name, "x.jsonl", batch_pk=batch.pk)
    assert not Thread.objects.exists() and stored_files(storage) == []


def test_a_batch_whose_worker_stopped_is_failed_by_the_sweep_and_its_upload_removed(
    admin_client, storage, settings
):
    name = uploads.save(b"thread_a\n", "ids.txt")
    with time_machine.travel(timezone.now() - timedelta(hours=1)):
        batch = ImportBatch.objects.create(
            source="csv", filename="ids.txt", upload_name=name, status="running",
            started_at=timezone.now(),
        )  # fmt: skip
    html = admin_client.get(
        reverse("admin:migrations_app_importbatch_change", args=[batch.pk])
    ).content.decode()
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.FAILED
    assert "its worker was killed or ran past Q_TIMEOUT" in batch.errors[0]["message"]
    assert "its worker was killed" in html and '<meta http-equiv="refresh"' not in html
    assert stored_files(storage) == []


def test_a_running_batch_within_the_task_timeout_is_left_running():
    batch = ImportBatch.objects.create(source="csv", status="running", started_at=timezone.now())
    assert intake.sweep_stopped_imports() == 0
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.RUNNING


# --- zip limits -----------------------------------------------------------------------------------
def zip_of(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in members.items():
            out.writestr(name, data)
    return path


def test_a_zip_bomb_is_refused_before_anything_is_loaded(tmp_path):
    bomb = b"[" + b" " * (4 << 20) + b"]"  # 4 MB of spaces: deflate makes it ~4 KB
    archive = zip_of(
        tmp_path / "bomb.zip",
        {"export/threads/thread_a.json": bundle_line("thread_a"), "export/x.jsonl": bomb},
    )
    with pytest.raises(intake.IntakeError) as refused:
        intake.load_export(archive)
    assert "bomb.zip: export/x.jsonl expands " in str(refused.value)
    assert "over the limit of 100 (IMPORT_ZIP_MAX_RATIO): refused as a possible zip bomb" in str(
        refused.value
    )
    assert not Thread.objects.exists()
    assert ImportBatch.objects.get().status == ImportBatch.Status.FAILED


def test_a_zip_expanding_past_the_total_limit_is_refused_whole(tmp_path, settings):
    settings.IMPORT_ZIP_MAX_UNCOMPRESSED_BYTES = 500
    archive = zip_of(
        tmp_path / "big.zip",
        {f"threads/thread_{n}.json": bundle_line(f"thread_{n}") for n in "abc"},
    )
    with pytest.raises(
        intake.IntakeError, match=r"big.zip expands to 1.\d KB, over the 500 bytes limit"
    ):
        intake.load_export(archive)
    assert not Thread.objects.exists()


def test_a_zip_member_is_streamed_and_fenced_whatever_its_header_says():
    stream = exports._Counted(io.BytesIO(b"x" * 100), [60], "x.zip")
    assert len(stream.read(50)) == 50
    with pytest.raises(intake.IntakeError, match="expands past its limit while being read"):
        stream.read(50)


def test_a_zip_within_the_limits_loads_through_an_upload(client, operator, tmp_path, storage):
    archive = zip_of(
        tmp_path / "ok.zip",
        {
            "e/threads/thread_a.json": bundle_line("thread_a"),
            "e/all.jsonl": bundle_line("thread_b"),
        },
    )
    upload = SimpleUploadedFile("ok.zip", archive.read_bytes())
    client.post(reverse(IMPORT), {"export_file": upload})
    assert ImportBatch.objects.get().new_count == 2
    assert stored_files(storage) == []


# --- sync assistants ------------------------------------------------------------------------------
SYNC = "admin:migrations_app_assistant_sync"


def test_an_operator_syncs_assistants_from_the_admin(client, operator, sandbox):
    listing = client.get(reverse("admin:migrations_app_assistant_changelist")).content.decode()
    assert 'id="sync-assistants"' in listing
    response = client.post(reverse(SYNC), follow=True)
    count = len(sandbox.state.assistants)
    assert Assistant.objects.count() == count
    assert f"Synced {count} assistants from the source" in response.content.decode()


def test_sync_links_threads_mirrored_before_their_assistant(client, operator, sandbox):
    thread_id = next(iter(sandbox.state.threads))
    Thread.objects.create(thread_id=thread_id)
    intake.fetch_for_staff(thread_id)
    client.post(reverse(SYNC))
    assert Thread.objects.get(thread_id=thread_id).assistant is not None


def test_a_failed_sync_says_why(client, operator, sandbox):
    sandbox.state.configure_faults(
        scripted=[{"kind": "auth_error", "method": "GET", "path_contains": "/assistants"}]
    )
    response = client.post(reverse(SYNC), follow=True)
    assert "Syncing assistants failed: The API key was refused" in response.content.decode()
    assert not Assistant.objects.exists()


def test_an_auditor_sees_no_sync_button_and_a_forged_sync_is_refused(client, auditor, sandbox):
    listing = client.get(reverse("admin:migrations_app_assistant_changelist")).content.decode()
    assert 'id="sync-assistants"' not in listing
    assert client.post(reverse(SYNC)).status_code == 403
    assert not Assistant.objects.exists()


def test_the_operators_group_may_sync_assistants_and_the_auditors_may_not():
    sync = Permission.objects.get(codename="sync_assistants")
    assert sync in Group.objects.get(name="operators").permissions.all()
    assert sync not in Group.objects.get(name="auditors").permissions.all()


def test_an_auditor_gets_no_import_button_and_a_refusal(client, auditor):
    listing = client.get(reverse("admin:migrations_app_importbatch_changelist")).content.decode()
    assert "Import threads" not in listing
    assert client.get(reverse(IMPORT)).status_code == 403
    upload = SimpleUploadedFile("ids.csv", b"thread_a\n")
    assert client.post(reverse(IMPORT), {"ids_file": upload}).status_code == 403
    assert not Thread.objects.exists()


def test_an_upload_missing_from_the_storage_fails_its_batch_in_words(storage):
    batch = ImportBatch.objects.create(source="csv", filename="ids.csv", upload_name="gone.csv")
    tasks.import_file("ids", "imports/gone.csv", "ids.csv", batch_pk=batch.pk)
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.FAILED
    assert batch.errors[0]["message"].startswith(
        "The uploaded file cannot be opened from the storage ("
    )


# --- imports and fetches that stop without a word (issue 20, finding 7) -------------------------
def test_a_long_import_that_keeps_beating_is_not_failed_while_it_runs():
    """`load_export` on the command line can run for hours: the sweeper fails an import by its
    silence, not by its age."""
    long_ago = timezone.now() - timedelta(hours=3)
    batch = ImportBatch.objects.create(
        source="export", status="running", started_at=long_ago, heartbeat_at=timezone.now()
    )
    assert intake.sweep_stopped_imports() == 0
    ImportBatch.objects.filter(pk=batch.pk).update(heartbeat_at=long_ago)
    assert intake.sweep_stopped_imports() == 1
    batch.refresh_from_db()
    assert batch.status == ImportBatch.Status.FAILED


def test_an_export_moves_its_batchs_heartbeat_on_as_it_loads(tmp_path, monkeypatch):
    from migrations_app.intake import exports

    monkeypatch.setattr(exports, "BUNDLE_CHUNK", 1)
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(bundle_line(f"thread_beat{i}") for i in range(3)) + "\n")
    beats = []
    batch = intake.load_export(path, progress=lambda batch: beats.append(batch.heartbeat_at))
    assert len(beats) == 3 and beats == sorted(beats) and batch.status == "done"


def test_an_upload_whose_import_task_left_the_queue_unrun_is_failed_and_removed(
    operator, storage, settings
):
    from django_q.models import OrmQ

    name = uploads.save(b"thread_a\n" * 100_000, "big.txt")
    batch = uploads._to_worker("ids", name, "big.txt", operator, False, "csv")
    batch.refresh_from_db()
    assert batch.task_row == OrmQ.objects.get().pk, "the batch and its task, together"
    OrmQ.objects.all().delete()  # purged
    ImportBatch.objects.filter(pk=batch.pk).update(created_at=timezone.now() - timedelta(hours=1))
    assert intake.sweep_stopped_imports() == 1
    batch.refresh_from_db()
    assert batch.status == "failed" and "never started" in batch.errors[0]["message"]
    assert stored_files(storage) == []

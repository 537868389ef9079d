"""The console's admin pages, through Django's test client."""

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_q.models import OrmQ

from migrations_app import intake
from migrations_app.models import (
    Assistant,
    Attempt,
    Conversation,
    ImportBatch,
    Message,
    Thread,
    ThreadStatus,
)
from migrations_app.sandbox import generate_dataset
from tests import factories
from tests.admin_pages import post_action
from tests.factories import HOSTILE, give_conversation, hostile_bundle

pytestmark = pytest.mark.django_db


def hostile_thread():
    intake.store_bundles([hostile_bundle()])
    thread = Thread.objects.get(thread_id="thread_hostile")
    return factories.failed(thread, error_kind="invalid", error_message=HOSTILE)


def changelist(**params):
    return reverse("admin:migrations_app_thread_changelist"), params


# --- every page answers ---------------------------------------------------------------------------
def test_every_admin_url_answers_without_error(admin_client, mirrored):
    thread = Thread.objects.first()
    give_conversation(thread, "conv_smoke")
    Attempt.objects.create(thread=thread, action="migrate", outcome="failed", error_message="x")
    batch = factories.import_batch(
        errors=[{"file": None, "line": 3, "message": "Line 3: bad"}], invalid_count=1
    )
    urls = [
        reverse("admin:index"),
        reverse("admin:migrations_app_dashboard"),
        reverse("admin:migrations_app_thread_mapping"),
        reverse("admin:migrations_app_importbatch_import"),
    ]
    for model, obj in [
        (Thread, thread),
        (Assistant, Assistant.objects.first()),
        (ImportBatch, batch),
        (Attempt, Attempt.objects.first()),
        (Conversation, Conversation.objects.first()),
        (Message, Message.objects.first()),
    ]:
        name = model._meta.model_name
        urls += [
            reverse(f"admin:migrations_app_{name}_changelist"),
            reverse(f"admin:migrations_app_{name}_change", args=[obj.pk]),
        ]
    for name in ["runstep"]:
        urls.append(reverse(f"admin:migrations_app_{name}_changelist"))
    for filters in [
        "?status__exact=failed",
        "?warnings=yes",
        "?q=thread_nope",
        "?q=conv_smoke",
        "?q=channel=web",
        "?q=cust_",
    ]:
        urls.append(reverse("admin:migrations_app_thread_changelist") + filters)
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, (url, response.status_code)


def test_the_root_url_leads_to_the_console(client):
    assert client.get("/").url == reverse("admin:index")


# --- the list -------------------------------------------------------------------------------------
def test_the_thread_list_query_count_does_not_grow_with_the_page(admin_client, mirrored):
    url = reverse("admin:migrations_app_thread_changelist")
    with CaptureQueriesContext(connection) as small:
        admin_client.get(url + "?o=1")
    Thread.objects.bulk_create([Thread(thread_id=f"thread_more{i}") for i in range(80)])
    with CaptureQueriesContext(connection) as large:
        assert admin_client.get(url + "?o=1").status_code == 200
    assert len(large) == len(small)
    assert len(large) <= 12


def test_the_list_shows_status_progress_error_and_conversation(admin_client, mirrored):
    thread = factories.in_state(
        Thread.objects.first(), ThreadStatus.RUNNING, items_total=40, items_committed=20
    )
    give_conversation(thread, "conv_listed")
    html = admin_client.get(reverse("admin:migrations_app_thread_changelist")).content.decode()
    assert "20/40" in html and "conv_listed" in html and "status-badge" in html


def test_search_finds_threads_by_conversation_id_and_metadata(admin_client, mirrored):
    thread = Thread.objects.get(thread_id=mirrored[0]["thread"]["id"])
    give_conversation(thread, "conv_found")
    url = reverse("admin:migrations_app_thread_changelist")
    for term in ["conv_found", thread.thread_id, f"customer={thread.data['metadata']['customer']}"]:
        response = admin_client.get(url, {"q": term})
        assert list(response.context["cl"].result_list) == [thread], term


# --- actions --------------------------------------------------------------------------------------
def test_migrate_confirms_first_then_queues_and_logs(client, operator, mirrored):
    done = factories.succeeded(Thread.objects.first())
    pks = list(Thread.objects.exclude(pk=done.pk).values_list("pk", flat=True)[:5])
    first = post_action(client, "migrate_selected", [*pks, done.pk])
    html = first.content.decode()
    assert first.status_code == 200 and "are you sure" in html.lower()
    assert "will apply to <strong>5</strong> threads" in html
    assert "1: already migrated (use re-migrate" in html
    assert not OrmQ.objects.exists()
    second = post_action(client, "migrate_selected", [*pks, done.pk], post="yes")
    assert second.status_code == 302
    assert Thread.objects.filter(status=ThreadStatus.QUEUED).count() == 5
    assert OrmQ.objects.exists()
    assert LogEntry.objects.filter(user=operator).count() == 5
    assert Attempt.objects.filter(actor=operator, action="migrate", outcome="queued").count() == 5


def test_select_across_applies_to_every_thread_matching_the_filter(client, operator, mirrored):
    Thread.objects.update(status=ThreadStatus.FAILED, error_kind="transient", error_message="x")
    url = reverse("admin:migrations_app_thread_changelist") + "?status__exact=failed"
    data = {
        "action": "retry_selected",
        "_selected_action": ["0"],
        "index": "0",
        "select_across": "1",
        "post": "yes",
    }
    assert client.post(url, data).status_code == 302
    assert Thread.objects.filter(status=ThreadStatus.QUEUED).count() == len(mirrored)


def test_preview_action_shows_items_and_sends_nothing(client, operator, mirrored):
    pks = list(Thread.objects.values_list("pk", flat=True)[:2])
    response = post_action(client, "preview_selected", pks)
    assert "Items as they would be sent" in response.content.decode()
    assert not OrmQ.objects.exists()


def test_the_thread_page_offers_only_the_actions_valid_for_its_state(client, operator, mirrored):
    thread = Thread.objects.first()
    url = reverse("admin:migrations_app_thread_change", args=[thread.pk])
    html = client.get(url).content.decode()
    assert 'name="button-migrate"' in html and 'name="button-retry"' not in html
    factories.succeeded(thread)
    html = client.get(url).content.decode()
    assert 'name="button-remigrate"' in html and 'name="button-migrate"' not in html


def test_a_thread_page_button_goes_through_the_confirmation(client, operator, mirrored):
    thread = factories.failed(Thread.objects.first())
    url = reverse("admin:migrations_app_thread_act", args=[thread.pk, "retry"])
    assert "are you sure" in client.post(url).content.decode().lower()
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert Thread.objects.get(pk=thread.pk).status == ThreadStatus.QUEUED


# --- the thread page ------------------------------------------------------------------------------
def test_the_thread_page_shows_both_sides_and_the_history(admin_client, mirrored):
    bundle = max(mirrored, key=lambda b: len(b["messages"]))
    thread = Thread.objects.get(thread_id=bundle["thread"]["id"])
    Attempt.objects.create(
        thread=thread,
        action="migrate",
        outcome="failed",
        error_message="The API rejected",
        request_id="req_abc",
    )
    url = reverse("admin:migrations_app_thread_change", args=[thread.pk])
    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get(url).content.decode()
    assert 'id="compare"' in html
    assert html.count('class="bubble ') == min(len(bundle["messages"]), 50)
    assert "req_abc" in html
    assert len(queries) <= 14, [q["sql"][:80] for q in queries.captured_queries]


def test_hostile_content_is_escaped_everywhere(admin_client):
    thread = hostile_thread()
    pages = [
        reverse("admin:migrations_app_thread_change", args=[thread.pk]),
        reverse("admin:migrations_app_thread_changelist"),
        reverse("admin:migrations_app_dashboard"),
    ]
    for url in pages:
        html = admin_client.get(url).content.decode()
        assert "<script>window.pwned" not in html, url
        assert '<img src=x onerror="window.pwned' not in html, url
    thread_page = admin_client.get(pages[0]).content.decode()
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in thread_page
    assert "{{ 7|add:1 }}" in thread_page, "template syntax in content is shown, not run"


# --- dashboard ------------------------------------------------------------------------------------
def test_the_dashboard_counts_groups_failures_and_pins_its_queries(admin_client, mirrored):
    Thread.objects.filter(pk__in=list(Thread.objects.values_list("pk", flat=True)[:3])).update(
        status="failed", error_kind="auth", **factories.error("The API key was refused")
    )
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:migrations_app_dashboard"))
    html = response.content.decode()
    assert "The API key was refused" in html and "Retry this group" in html
    assert 'data-status="failed">3<' in html
    # Session, user; both request budgets; the tallies (counts, per minute, failures, coverage);
    # the estimate's sizes, threads being retried; sweeper, last worker attempt, queued tasks; the
    # live source's card: threads waiting for a sync, diverged ones, batches by cutover step.
    # After the migration (_applications.html): threads lost (tallies), conversations overdue,
    # the watchdog's last run and its schedule, the assistants' models, conversations exceeding
    # their context and not counted; and one bounded count per shutdown date of their models.
    from migrations_app import readiness

    dates = len(readiness.retirements())
    assert dates == 2  # the demo's models: gpt-4o, gpt-4o-mini, gpt-4.1 and o3-mini
    assert len(queries) <= 16 + 7 + dates, [q["sql"][:90] for q in queries.captured_queries]


# --- import ---------------------------------------------------------------------------------------
def test_pasting_ids_imports_them_and_shows_the_batch(client, operator):
    url = reverse("admin:migrations_app_importbatch_import")
    response = client.post(url, {"pasted": "thread_a\nthread_b\nnope\nthread_a"}, follow=True)
    assert response.status_code == 200
    batch = ImportBatch.objects.get()
    assert (batch.new_count, batch.duplicate_count, batch.invalid_count) == (2, 1, 1)
    assert "Line 3: &#x27;nope&#x27; is not a thread id" in response.content.decode()


def test_uploading_a_csv_and_an_export(client, operator, tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path)  # the default storage, where uploads wait
    from django.core.files.uploadedfile import SimpleUploadedFile

    url = reverse("admin:migrations_app_importbatch_import")
    ids = SimpleUploadedFile("ids.csv", b"thread_id\nthread_x\nthread_y\n")
    client.post(url, {"ids_file": ids})
    assert Thread.objects.count() == 2
    import json

    _, bundles = generate_dataset(seed=9, thread_count=3)
    data = "".join(json.dumps(b) + "\n" for b in bundles).encode()
    client.post(url, {"export_file": SimpleUploadedFile("x.jsonl", data)})
    assert Thread.objects.filter(fetched_at__isnull=False).count() == 3
    assert not list(tmp_path.rglob("*.jsonl")), "uploads are removed after import"


def test_the_import_form_needs_exactly_one_input(client, operator):
    url = reverse("admin:migrations_app_importbatch_import")
    response = client.post(url, {})
    assert "Give exactly one" in response.content.decode()


# --- mapping --------------------------------------------------------------------------------------
def test_the_mapping_downloads_for_the_current_filter(admin_client, mirrored):
    done = factories.succeeded(Thread.objects.first(), "conv_done")
    url = reverse("admin:migrations_app_thread_mapping") + "?status__exact=succeeded"
    response = admin_client.get(url)
    body = b"".join(response.streaming_content).decode()
    assert body.splitlines() == [
        "thread_id,conversation_id,status,items,warnings",
        f"{done.thread_id},conv_done,succeeded,0,{done.warning_count}",  # known when mirrored
    ]


# --- permissions ----------------------------------------------------------------------------------
def test_an_auditor_sees_no_actions_and_a_forged_post_is_refused(client, auditor, mirrored):
    thread = Thread.objects.first()
    html = client.get(reverse("admin:migrations_app_thread_change", args=[thread.pk])).content
    assert b'id="actions"' not in html
    listing = client.get(reverse("admin:migrations_app_thread_changelist"))
    assert [
        name
        for name, _ in listing.context["cl"].model_admin.get_action_choices(listing.wsgi_request)
    ][1:] == ["preview_selected"]
    forged = client.post(
        reverse("admin:migrations_app_thread_act", args=[thread.pk, "migrate"]), {"post": "yes"}
    )
    assert forged.status_code == 403
    assert client.get(reverse("admin:migrations_app_importbatch_import")).status_code == 403
    post_action(client, "migrate_selected", [thread.pk], post="yes")
    assert not Thread.objects.filter(status=ThreadStatus.QUEUED).exists()


def test_history_and_mirror_rows_are_read_only(admin_client, mirrored):
    attempt = Attempt.objects.create(
        thread=Thread.objects.first(), action="migrate", outcome="failed"
    )
    url = reverse("admin:migrations_app_attempt_change", args=[attempt.pk])
    response = admin_client.post(url, {"outcome": "succeeded"})
    assert response.status_code == 403
    assert (
        reverse("admin:migrations_app_attempt_add")
        != admin_client.get(reverse("admin:migrations_app_attempt_add")).status_code
        == 403
    )


def test_the_dashboard_shows_which_source_and_destination_the_console_talks_to(admin_client):
    key = "azure-dashboard-key-5f1e9c3a7b"
    with override_settings(
        ASSISTANTS_BASE_URL="https://contoso.services.ai.azure.com/api/projects/support",
        ASSISTANTS_API_KEY=key,
        ASSISTANTS_AUTH="api-key",
        ASSISTANTS_API_VERSION="v1",
        OPENAI_BASE_URL="https://contoso.openai.azure.com/openai/v1/",
        OPENAI_API_KEY=None,
        OPENAI_AUTH="entra",
    ):
        html = admin_client.get(reverse("admin:migrations_app_dashboard")).content.decode()
    block = html[html.index('id="connections"') :]
    block = block[: block.index("</table>")]
    assert "contoso.services.ai.azure.com/api/projects/support" in block
    assert "<td>v1</td><td>API key in the api-key header</td>" in block
    assert "contoso.openai.azure.com/openai/v1" in block
    assert "<td>none</td><td>Microsoft Entra ID token</td>" in block
    assert key not in html


def test_with_no_key_the_dashboard_says_both_sides_are_the_sandbox(admin_client):
    with override_settings(OPENAI_API_KEY=None, ASSISTANTS_API_KEY=None):
        html = admin_client.get(reverse("admin:migrations_app_dashboard")).content.decode()
    assert html.count("the sandbox (no key)") == 2

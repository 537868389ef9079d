"""The rough edges of issue 21 (items 7 to 12), through Django's test client: a 404 in the
console's frame, the import batch page's words and links, the dashboard's wording, the thread
page's folded configuration and one-line dates, confirmation pages that name a few threads and
are red only where something is replaced, and a list that says when a worker is still at it."""

import re

import pytest
from django.test import override_settings
from django.urls import reverse
from django_q.models import OrmQ

from migrations_app import intake
from migrations_app.models import Attempt, ImportBatch, Thread, ThreadStatus
from tests import factories
from tests.admin_pages import post_action

pytestmark = pytest.mark.django_db

THREADS = reverse("admin:migrations_app_thread_changelist")
DASHBOARD = reverse("admin:migrations_app_dashboard")


# --- item 7: not found ------------------------------------------------------------------------
@override_settings(DEBUG=False)
@pytest.mark.parametrize(
    "url",
    ["/no-such-page/", "/admin/migrations_app/thread/987654/change/", "/admin/no/such/page/"],
)
def test_a_missing_page_has_the_consoles_frame_and_the_way_back(admin_client, url):
    response = admin_client.get(url)
    assert response.status_code == 404
    html = response.content.decode()
    assert "Assistants → Conversations migration console" in html
    assert 'id="not-found"' in html and "There is nothing at this address" in html
    assert f'<a href="{reverse("admin:index")}" class="button">Back to the console</a>' in html
    assert f'href="{THREADS}"' in html
    assert response["Content-Security-Policy"]


@override_settings(DEBUG=False)
def test_a_missing_page_for_someone_not_logged_in_offers_the_console_only(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Back to the console" in html and f'href="{THREADS}"' not in html


@override_settings(DEBUG=False)
def test_a_missing_page_shows_its_address_escaped(admin_client):
    html = admin_client.get("/<script>x</script>/").content.decode()
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html


# --- item 8: the import batch page ------------------------------------------------------------
def batch_page(client, batch):
    return client.get(reverse("admin:migrations_app_importbatch_change", args=[batch.pk]))


def test_the_batch_page_names_its_counts_in_words(admin_client):
    batch = factories.import_batch(
        status="done", new_count=1200, duplicate_count=3, invalid_count=2, skipped_count=0
    )
    html = batch_page(admin_client, batch).content.decode()
    assert "New count" not in html and "Duplicate count" not in html
    for label, value in [
        ("New threads", "1,200"),
        ("Already known", "3: registered before, left in the batch that first had them"),
        ("Invalid", "2 lines, each listed under errors"),
    ]:
        assert re.search(rf"<label>{label}:</label>\s*<div class=\"readonly\">{value}</div>", html)


def test_the_batch_page_lists_its_errors_aligned_with_the_other_values(admin_client):
    batch = factories.import_batch(status="done", invalid_count=1)
    ImportBatch.objects.filter(pk=batch.pk).update(
        errors=[{"file": None, "line": 3, "message": "Line 3: not a thread id"}]
    )
    html = batch_page(admin_client, batch).content.decode()
    assert '<ul class="report"><li>Line 3: not a thread id</li></ul>' in html


def test_each_fetch_count_links_to_exactly_those_threads(admin_client, sandbox):
    ids = [*sorted(sandbox.state.threads)[:2], "thread_NotAtTheSource00000001"]
    batch = intake.import_thread_ids(ids, batch=ImportBatch(source="paste"))
    intake.queue_batch_fetch(batch)
    intake.fetch_for_staff(ids[0])
    intake.fetch_for_staff(ids[2])
    html = batch_page(admin_client, batch).content.decode()
    expected = {"fetched": [ids[0]], "not_found": [ids[2]], "failed": [], "waiting": [ids[1]]}
    for outcome, thread_ids in expected.items():
        link = re.search(rf'<a href="([^"]+)" class="fetch-{outcome}"><b>(\d+)</b>', html)
        assert link and int(link[2]) == len(thread_ids), outcome
        listed = admin_client.get(link[1].replace("&amp;", "&")).context["cl"].result_list
        assert sorted(t.thread_id for t in listed) == thread_ids, outcome
    assert f'href="{THREADS}?import_batch__id__exact={batch.pk}" id="batch-threads"' in html


# --- item 9: the dashboard's words --------------------------------------------------------------
def test_queued_fetches_are_not_called_nothing_queued(admin_client):
    OrmQ.objects.create(key="console", payload="a fetch", lock=None)
    html = admin_client.get(DASHBOARD).content.decode()
    assert "Nothing queued or running" not in html
    assert "1 task waits for the workers (fetches, imports or bulk actions)" in html
    assert '<meta http-equiv="refresh" content="5">' in html


def test_every_count_on_the_dashboard_is_written_the_same_way(admin_client):
    factories.threads(2890)
    html = admin_client.get(DASHBOARD).content.decode()
    assert "<strong>2,890</strong> threads, <strong>about" in html
    assert 'data-status="pending">2,890<' in html and "2890" not in html


def test_the_chart_says_what_it_counts(admin_client):
    html = admin_client.get(DASHBOARD).content.decode()
    assert "Migrations finished per minute, last hour" in html
    assert "A thread migrated again (a re-migrate) counts each time it finishes." in html


# --- item 10: the thread page -----------------------------------------------------------------
def test_the_responses_configuration_is_folded_and_the_history_dates_are_one_line(
    admin_client, mirrored
):
    thread = Thread.objects.filter(assistant__isnull=False).first()
    Attempt.objects.create(thread=thread, action="migrate", outcome="queued")
    html = admin_client.get(
        reverse("admin:migrations_app_thread_change", args=[thread.pk])
    ).content.decode()
    assert re.search(r'<details class="console-card console-raw" id="config">\s*<summary>', html)
    assert '<td class="when"><time datetime="' in html
    assert html.index('id="history"') > html.index('id="compare"')


# --- item 11: confirmation pages ----------------------------------------------------------------
def confirm(client, action, threads):
    return post_action(client, f"{action}_selected", [t.pk for t in threads]).content.decode()


def submit_button(html):
    return re.search(r'<input type="submit" value="Yes, [^"]*" class="(\w+)">', html)[1]


def test_only_a_re_migrate_confirms_with_a_red_button(client, operator, mirrored):
    threads = list(Thread.objects.order_by("pk")[:2])
    assert submit_button(confirm(client, "migrate", threads)) == "default"
    for thread in threads:
        factories.succeeded(thread, f"conv_{thread.pk:024d}")
    html = confirm(client, "remigrate", threads)
    assert submit_button(html) == "destructive" and "delete-confirmation" not in html


def test_a_confirmation_names_five_threads_or_fewer(client, operator, mirrored):
    threads = list(Thread.objects.order_by("thread_id")[:5])
    factories.succeeded(threads[0])
    html = confirm(client, "migrate", threads)
    named = re.findall(r"<li><a href=\"[^\"]+\"><code>(\w+)</code></a>([^<]*)</li>", html)
    assert [thread_id for thread_id, _ in named] == [t.thread_id for t in threads]
    assert named[0][1].startswith(": skipped, already migrated")
    assert [why for _, why in named[1:]] == ["", "", "", ""]


def test_a_confirmation_of_six_threads_counts_them_instead(client, operator, mirrored):
    html = confirm(client, "migrate", list(Thread.objects.all()[:6]))
    assert 'id="named-threads"' not in html and "will apply to <strong>6</strong>" in html


# --- item 12: the list while a worker applies a bulk action -----------------------------------
def test_the_list_says_a_bulk_action_is_still_being_applied(client, operator):
    factories.threads(120)
    data = {"action": "migrate_selected", "select_across": "1", "index": "0",
            "_selected_action": "0", "post": "yes"}  # fmt: skip
    listing = client.get(client.post(THREADS, data).url).content.decode()
    assert 'id="bulk-in-progress"' in listing
    said = r"bulk action #\d+</a>, migrate on 120 threads for olga: waiting for a worker"
    assert re.search(said, listing)
    assert "the rows below show each thread as it is now" in listing
    assert Thread.objects.filter(status=ThreadStatus.PENDING).count() == 120


def test_the_list_says_nothing_once_the_bulk_action_is_done(client, operator):
    factories.bulk_action(status="done", done=120)
    assert 'id="bulk-in-progress"' not in client.get(THREADS).content.decode()

"""The console as staff meet it, through Django's test client: compact lists, the dashboard's
figures and estimate, and the small things that got in the way (issue 11, items 3, 8 and 12)."""

from datetime import UTC, datetime

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from migrations_app import actions, dashboard, intake
from migrations_app.estimate import SizeClass, estimate
from migrations_app.models import ImportBatch, Thread, ThreadStatus
from tests import factories
from tests.admin_pages import post_action

pytestmark = pytest.mark.django_db

THREADS = reverse("admin:migrations_app_thread_changelist")
DASHBOARD = reverse("admin:migrations_app_dashboard")
IMPORT = reverse("admin:migrations_app_importbatch_import")


# --- the lists --------------------------------------------------------------------------------
def test_a_thread_never_fetched_shows_not_fetched_instead_of_zero_messages(admin_client):
    intake.import_thread_ids(["thread_bare"], batch=ImportBatch(source="paste"))
    html = admin_client.get(THREADS).content.decode()
    assert '<td class="field-source_messages"><span class="quiet">not fetched</span></td>' in html


def test_a_fetched_thread_without_messages_shows_zero(admin_client, mirrored):
    Thread.objects.update(message_count=0)
    html = admin_client.get(THREADS).content.decode()
    assert '<td class="field-source_messages">0</td>' in html and "not fetched" not in html


def test_a_long_error_is_one_line_in_the_list_with_the_whole_in_its_tooltip(admin_client, mirrored):
    long = "Uploading failed: " + "the server said no; " * 40 + "END"
    Thread.objects.filter(pk=Thread.objects.first().pk).update(
        status="failed", error_kind="transient", error_message=long
    )
    html = admin_client.get(THREADS).content.decode()
    cell = html[html.index('<td class="field-short_error"><span class="one-line"') :]
    cell = cell[: cell.index("</td>")]
    assert 'class="one-line"' in cell and f'title="{long}"' in cell


def test_the_list_never_loads_the_source_json(admin_client, mirrored):
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(THREADS)
    listing = [q["sql"] for q in queries.captured_queries if "ORDER BY" in q["sql"]]
    assert listing and all('"migrations_app_thread"."data",' not in sql for sql in listing)


# Frozen in another year than the batch's: the list then shows its year.
@time_machine.travel(datetime(2026, 6, 1, 12, 0, tzinfo=UTC), tick=False)
def test_the_lists_show_times_compactly_with_the_full_time_in_a_tooltip(admin_client, mirrored):
    batch = ImportBatch.objects.create(source="csv", filename="ids.csv")
    ImportBatch.objects.filter(pk=batch.pk).update(
        created_at=datetime(2025, 3, 4, 5, 6, tzinfo=UTC)
    )
    html = admin_client.get(reverse("admin:migrations_app_importbatch_changelist")).content
    assert b'<time datetime="2025-03-04T05:06:00+00:00" title="' in html
    assert b">04 Mar 2025</time>" in html


# --- the dashboard ----------------------------------------------------------------------------
def test_the_dashboard_estimates_the_time_for_everything_not_yet_migrated(
    admin_client, mirrored, settings
):
    settings.API_REQUESTS_PER_MINUTE = 60
    Thread.objects.filter(pk__in=list(Thread.objects.values_list("pk", flat=True)[:10])).update(
        status=ThreadStatus.SUCCEEDED
    )
    intake.import_thread_ids(["thread_unfetched1", "thread_unfetched2"], batch=ImportBatch())
    left = Thread.objects.exclude(status=ThreadStatus.SUCCEEDED)
    sizes = [
        SizeClass(1, t.message_count if t.fetched_at else None, t.items_total)
        for t in left.only("fetched_at", "message_count", "items_total")
    ]
    expected = estimate(sizes, per_minute=60)
    assert expected.threads == len(mirrored) - 10 + 2 and expected.unfetched == 2
    html = admin_client.get(DASHBOARD).content.decode()
    assert f"<strong>{expected}</strong>" in html
    assert "2 of them are not fetched yet: their sizes are estimated" in html


def test_the_estimate_reads_sizes_in_one_query(mirrored):
    with CaptureQueriesContext(connection) as queries:
        dashboard.remaining_sizes()
    assert len(queries) == 1


def test_many_threads_left_are_estimated_from_a_sample_scaled_to_the_exact_count(
    mirrored, monkeypatch
):
    exact = dashboard.remaining_estimate()
    sampled = []
    real = dashboard.sampled_remaining_sizes
    monkeypatch.setattr(dashboard, "SAMPLE_ABOVE", 5)
    monkeypatch.setattr(dashboard, "SAMPLE_ROWS", 10**9)  # a 100 % sample: the same sizes
    monkeypatch.setattr(
        dashboard, "sampled_remaining_sizes", lambda p: sampled.append(p) or real(p)
    )
    result = dashboard.remaining_estimate(counts=dashboard.status_counts())
    assert sampled == [100.0]
    assert result == exact


def test_few_threads_left_are_counted_exactly(mirrored, monkeypatch):
    monkeypatch.setattr(dashboard, "sampled_remaining_sizes", lambda p: pytest.fail("sampled"))
    result = dashboard.remaining_estimate(counts=dashboard.status_counts())
    assert result.threads == len(mirrored)


def test_a_thread_queued_for_retry_leaves_the_failure_groups_at_once(admin_client, mirrored):
    Thread.objects.filter(pk__in=list(Thread.objects.values_list("pk", flat=True)[:3])).update(
        status="failed", error_kind="transient", **factories.error("The server answered 503")
    )
    assert "The server answered N" in admin_client.get(DASHBOARD).content.decode()
    actions.apply("retry", Thread.objects.filter(status="failed"))
    # What the state machine records beside the status: what staff asked for.
    Thread.objects.filter(status="queued").update(requested_action="retry")
    html = admin_client.get(DASHBOARD).content.decode()
    assert "The server answered N" not in html and "No failures." in html
    assert "Being retried now" in html and ">3 threads</a>" in html
    listing = admin_client.get(THREADS + "?status__in=queued,running")  # where the link goes
    assert len(listing.context["cl"].result_list) == 3


def test_the_retry_line_counts_up_to_its_cap_and_then_says_more(
    admin_client, mirrored, monkeypatch
):
    Thread.objects.filter(pk__in=list(Thread.objects.values_list("pk", flat=True)[:3])).update(
        status="queued", requested_action="retry"
    )
    monkeypatch.setattr(dashboard, "RETRYING_COUNTED", 2)
    html = admin_client.get(DASHBOARD).content.decode()
    assert ">more than 2 threads</a>" in html
    assert dashboard.threads_label(1, 10_000) == "1 thread"
    assert dashboard.threads_label(10_001, 10_000) == "more than 10,000 threads"


def test_retry_this_group_comes_back_to_the_dashboard(client, operator, mirrored):
    failed = Thread.objects.first().pk
    Thread.objects.filter(pk=failed).update(
        status="failed", error_kind="transient", **factories.error("boom")
    )
    data = {
        "action": "retry_selected",
        "select_across": "1",
        "index": "0",
        "_selected_action": "0",
        "return_to": "dashboard",
    }
    url = THREADS + "?status__exact=failed&error_kind__exact=transient&error_template=boom"
    confirmation = client.post(url, data).content.decode()
    assert '<input type="hidden" name="return_to" value="dashboard">' in confirmation
    done = client.post(url, {**data, "post": "yes"})
    assert done.status_code == 302 and done.url == DASHBOARD
    retried = Thread.objects.get(pk=failed)
    assert (retried.status, retried.error_message) == (ThreadStatus.QUEUED, "")


def test_the_dashboard_refreshes_itself_even_when_nothing_runs(admin_client, mirrored):
    html = admin_client.get(DASHBOARD).content.decode()
    assert '<meta http-equiv="refresh" content="30">' in html
    Thread.objects.filter(pk=Thread.objects.first().pk).update(status="queued")
    html = admin_client.get(DASHBOARD).content.decode()
    assert '<meta http-equiv="refresh" content="5">' in html


def test_failure_groups_name_the_kind_in_words(admin_client, mirrored):
    Thread.objects.filter(pk=Thread.objects.first().pk).update(
        status="failed", error_kind="not_found", **factories.error("gone")
    )
    assert "<td>Not found at the source</td>" in admin_client.get(DASHBOARD).content.decode()


@pytest.mark.parametrize(
    ("peak", "top"), [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (11, 20), (118, 200), (501, 1000)]
)
def test_the_chart_scale_tops_at_a_round_number(peak, top):
    assert dashboard.nice_ceiling(peak) == top


def test_the_chart_draws_bars_against_its_scale_with_ticks_every_quarter_hour():
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    per_minute = [(start.replace(minute=i), 0) for i in range(60)]
    per_minute[30] = (per_minute[30][0], 30)
    per_minute[59] = (per_minute[59][0], 15)
    chart = dashboard.chart(per_minute)
    assert (chart.scale_max, chart.scale_half, chart.peak, chart.total) == (50, 25, 30, 45)
    assert [t.minute for t in chart.ticks] == [0, 15, 30, 45]
    assert chart.end == datetime(2026, 1, 1, 13, 0, tzinfo=UTC)
    assert (chart.bars[30].height, chart.bars[30].y) == (60, 40)
    assert chart.bars[0].height == 0


def test_the_progress_never_rounds_a_thread_left_to_100_percent():
    counts = [dashboard.StatusCount("succeeded", "Succeeded", 1999)]
    counts.append(dashboard.StatusCount("pending", "Pending", 1))
    progress = dashboard.progress(counts)
    assert progress.done_percent == 99.9 and progress.todo_percent == 0.1


def test_the_dashboard_draws_without_style_attributes(admin_client, mirrored):
    html = admin_client.get(DASHBOARD).content.decode()
    content = html[html.index('<div id="content"') :]
    assert "style=" not in content


# --- the admin index --------------------------------------------------------------------------
def test_the_admin_index_shows_the_dashboards_key_figures(admin_client, mirrored):
    Thread.objects.filter(pk=Thread.objects.first().pk).update(status="failed")
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert 'id="overview"' in html and f'data-status="pending">{len(mirrored) - 1}<' in html
    assert "1 failed thread</a> needs attention" in html
    assert f'href="{DASHBOARD}"><strong>Open the dashboard' in html


# --- small things (issue 11, item 12) ---------------------------------------------------------
def test_an_import_error_names_its_line_once(client, operator):
    response = client.post(IMPORT, {"pasted": "thread_a\nnope"}, follow=True)
    html = response.content.decode()
    assert "<li>Line 2: &#x27;nope&#x27; is not a thread id (expected thread_…)</li>" in html
    assert ":2: Line 2" not in html


def test_an_export_error_names_its_file_and_line(client, operator):
    batch = ImportBatch.objects.create(source="export", filename="x.jsonl")
    batch.add_error("invalid JSON (Expecting value)", file="x.jsonl", line=4)
    batch.save()
    html = client.get(reverse("admin:migrations_app_importbatch_change", args=[batch.pk]))
    assert "<li>x.jsonl, line 4: invalid JSON (Expecting value)</li>" in html.content.decode()


def test_an_empty_file_is_refused_with_one_error(client, operator):
    empty = SimpleUploadedFile("ids.csv", b"")
    html = client.post(IMPORT, {"ids_file": empty}).content.decode()
    assert html.count("The submitted file is empty.") == 1
    assert "Give exactly one" not in html


def test_an_empty_form_says_what_is_missing_once(client, operator):
    html = client.post(IMPORT, {}).content.decode()
    assert html.count("Give exactly one: an id file, pasted ids, or an export.") == 1


def test_an_import_with_no_ids_says_so(client, operator, tmp_path, settings):
    settings.UPLOAD_DIR = str(tmp_path)
    header_only = SimpleUploadedFile("ids.csv", b"thread_id\n")
    html = client.post(IMPORT, {"ids_file": header_only}, follow=True).content.decode()
    assert "no thread id found." in html


def test_an_import_says_what_it_did_and_what_comes_next(client, operator):
    html = client.post(IMPORT, {"pasted": "thread_a\nthread_b\nnope"}, follow=True)
    batch = ImportBatch.objects.get()
    text = html.content.decode()
    assert f"Import batch #{batch.pk}: 2 new threads, 1 invalid line (listed below)." in text
    assert "2 fetches from the source queued: the workers copy" in text


def test_a_failed_import_states_its_reason_once(client, operator, tmp_path, settings):
    settings.UPLOAD_DIR = str(tmp_path)
    wrong = SimpleUploadedFile("ids.csv", b"id,name\nthread_a,x\n")
    html = client.post(IMPORT, {"ids_file": wrong}, follow=True).content.decode()
    assert html.count("The CSV header has no thread_id column") == 1
    assert "failed: nothing was imported (the reason is below)" in html


def test_the_import_form_is_laid_out_like_an_admin_form(client, operator):
    html = client.get(IMPORT).content.decode()
    assert html.count('<fieldset class="module aligned">') == 2
    assert '<div class="form-row field-pasted">' in html
    assert "admin/css/forms.css" in html


def test_confirming_one_thread_speaks_of_it_in_the_singular(client, operator, mirrored):
    html = post_action(client, "migrate_selected", [Thread.objects.first().pk]).content.decode()
    assert "It will be queued for the workers" in html and "They will" not in html


def test_a_done_action_says_what_happens_next(client, operator, mirrored):
    pks = list(Thread.objects.values_list("pk", flat=True)[:2])
    response = post_action(client, "migrate_selected", pks, post="yes")
    text = client.get(response.url).content.decode()
    assert "Migrate: 2 threads queued. The workers upload and verify each one" in text
    assert f'follow them on the <a href="{DASHBOARD}">dashboard</a>' in text


def test_an_auditor_meets_a_403_page_in_the_admins_look(client, auditor):
    response = client.get(IMPORT)
    html = response.content.decode()
    assert response.status_code == 403
    assert 'id="permission-denied"' in html and "Migration console" in html
    assert "aldo" in html and reverse("admin:logout") in html


def test_the_favicon_is_served_from_our_static_files(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response.url.endswith("migrations_app/favicon.svg")
    from django.contrib.staticfiles import finders

    assert finders.find("migrations_app/favicon.svg")


def test_every_page_links_the_favicon(admin_client):
    assert (
        b'rel="icon" href="/static/migrations_app/favicon.svg"'
        in admin_client.get(reverse("admin:index")).content
    )


def test_the_consoles_own_pages_lead_back_through_the_app(admin_client, mirrored):
    thread = Thread.objects.first()
    app = reverse("admin:app_list", args=["migrations_app"])
    for url in [
        DASHBOARD,
        IMPORT,
        reverse("admin:migrations_app_thread_change", args=[thread.pk]),
        reverse("admin:migrations_app_assistant_change", args=[thread.assistant_id]),
    ]:
        html = admin_client.get(url).content.decode()
        crumbs = html[html.index('<div class="breadcrumbs">') :]
        assert f'<a href="{app}">' in crumbs[: crumbs.index("</div>")], url


# --- the command line -------------------------------------------------------------------------
def test_a_dry_run_ends_with_the_estimate_for_the_selected_threads(mirrored, capsys, settings):
    settings.API_REQUESTS_PER_MINUTE = 120
    chosen = [b["thread"]["id"] for b in mirrored[:3]]
    Thread.objects.filter(thread_id=chosen[0]).update(status=ThreadStatus.SUCCEEDED)
    call_command("migrate_threads", *chosen, "--dry-run")
    out = capsys.readouterr().out
    left = Thread.objects.filter(thread_id__in=chosen[1:])
    expected = estimate([SizeClass(1, t.message_count) for t in left], per_minute=120)
    assert out.rstrip().splitlines()[-1] == f"Estimate for 2 threads: {expected}."
    assert f"{chosen[1]}: " in out  # the per-thread output is still there

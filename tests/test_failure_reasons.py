"""Failures grouped by kind and reason (issue 21, item 4): the reason is the message with what
differs from thread to thread left out, so thousands of ids the source does not know are one
group, whose link lists exactly its threads and whose button acts on exactly those."""

import importlib

import pytest
from django.apps import apps
from django.urls import reverse

from migrations_app import states, tallies
from migrations_app.models import ErrorKind, Thread, ThreadStatus
from migrations_app.openai_client import ApiFailure
from migrations_app.reasons import TEMPLATE_LENGTH, error_template
from tests import factories

DASHBOARD = reverse("admin:migrations_app_dashboard")
THREADS = reverse("admin:migrations_app_thread_changelist")
NOT_FOUND = (
    "Fetching from the source failed: The API does not know this object (deleted, wrong id, or "
    "wrong project) (HTTP 404): No thread found with id '{}'."
)


# --- the reason, without a database -------------------------------------------------------------
@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (NOT_FOUND.format("thread_DemoUnknownThread0000000"), NOT_FOUND.format("thread_…")),
        ("Conversation conv_68a5f1e20000 holds 12 items", "Conversation conv_… holds N items"),
        ("request req_5f3a9b0c1d2e3f4a5b6c7d8e9f0a1b2c failed", "request req_… failed"),
        ("id 123e4567-e89b-12d3-a456-426614174000 or deadbeef00112233", "id … or …"),
        ("Item 3 of 40 is too large for the API", "Item N of N is too large for the API"),
    ],
)
def test_a_reason_leaves_out_ids_and_numbers(message, reason):
    assert error_template(message) == reason


@pytest.mark.parametrize(
    "kept",
    [
        "The API key was refused (HTTP 401): Incorrect API key provided",
        "function_call_output without a call; code_interpreter and file_search steps",
        "model gpt-4o at /v1/conversations; check OPENAI_API_KEY",
    ],
)
def test_a_reason_keeps_http_statuses_words_and_names(kept):
    assert error_template(kept) == kept


def test_a_reason_is_one_line_of_at_most_the_columns_length():
    reason = error_template("line one\n  line two " + "x" * 500)
    assert "\n" not in reason and reason.startswith("line one line two x")
    assert len(reason) == TEMPLATE_LENGTH and reason.endswith("…")
    assert error_template("") == ""


# --- grouping -----------------------------------------------------------------------------------
def unknown_ids(count, prefix="thread_Unknown"):
    """`count` threads the source did not know, failed as a fetch fails them."""
    threads = factories.threads(count, prefix=prefix)
    for thread in threads:
        failure = ApiFailure(ErrorKind.NOT_FOUND, NOT_FOUND.format(thread.thread_id), 404)
        assert states.fetch_failed(thread.pk, failure)
    return threads


@pytest.mark.django_db
def test_thousands_of_unknown_ids_are_one_group_with_one_button(admin_client):
    unknown_ids(300)
    assert tallies.failure_groups(5) == [
        {"error_kind": "not_found", "error_template": NOT_FOUND.format("thread_…"), "count": 300}
    ]
    html = admin_client.get(DASHBOARD).content.decode()
    assert html.count('class="failure-group"') == 1
    assert html.count('value="Fetch this group again"') == 1
    assert ">300</a>" in html


@pytest.mark.django_db
def test_a_groups_link_lists_exactly_its_threads(admin_client):
    group = unknown_ids(12)
    other = factories.failed(
        factories.threads(1, prefix="thread_Other")[0], ErrorKind.NOT_FOUND, "No such file"
    )
    link = admin_client.get(DASHBOARD).context["failures"][0]["url"]
    listed = admin_client.get(link).context["cl"].result_list
    assert {t.pk for t in listed} == {t.pk for t in group}
    assert other.pk not in {t.pk for t in listed}


@pytest.mark.django_db
def test_retry_this_group_acts_on_exactly_its_threads(client, operator):
    timeouts = factories.threads(3, prefix="thread_Timeout")
    for thread in timeouts:
        factories.failed(thread, "transient", f"Timed out after 60 s on {thread.thread_id}x9")
    refused = factories.failed(
        factories.threads(1, prefix="thread_Refused")[0], "transient", "The server answered 500"
    )
    groups = client.get(DASHBOARD).context["failures"]
    group = next(g for g in groups if g["error_template"].startswith("Timed out"))
    assert group["count"] == 3 and group["remedy"] == ("retry_selected", "Retry this group")
    form = {"action": "retry_selected", "select_across": "1", "index": "0",
            "_selected_action": "0", "return_to": "dashboard"}  # fmt: skip
    confirmation = client.post(group["url"], form)
    assert confirmation.context["plan"].eligible == 3
    client.post(group["url"], {**form, "post": "yes"})
    queued = set(Thread.objects.filter(status=ThreadStatus.QUEUED).values_list("pk", flat=True))
    assert queued == {t.pk for t in timeouts}
    refused.refresh_from_db()
    assert refused.status == ThreadStatus.FAILED


@pytest.mark.django_db
def test_the_failure_groups_read_the_tallies_in_one_query(django_assert_num_queries):
    unknown_ids(50)
    with django_assert_num_queries(1):
        assert len(tallies.failure_groups(20)) == 1


@pytest.mark.django_db
def test_the_migration_gives_threads_failed_before_it_their_reason():
    threads = factories.threads(3, prefix="thread_Before")
    Thread.objects.filter(pk__in=[t.pk for t in threads]).update(
        status=ThreadStatus.FAILED, error_kind="not_found", error_message="No 'thread_A1b2c3'"
    )
    migration = importlib.import_module("migrations_app.migrations.0013_failure_reasons")
    migration.fill_templates(apps, None)
    assert set(Thread.objects.values_list("error_template", flat=True)) == {"No 'thread_…'"}
    tallies.install(force=True)
    assert [g["count"] for g in tallies.failure_groups(5)] == [3]

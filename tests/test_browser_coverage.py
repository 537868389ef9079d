"""Coverage in a real browser: an operator imports an id list and a v1 export from the import page,
and the export's batch page and the dashboard show every kind of difference, each a link to its
threads and a CSV."""

import csv

import pytest
from playwright.sync_api import expect

from migrations_app.models import ImportBatch, Thread
from migrations_app.sandbox import generate_dataset
from migrations_app.sandbox.exporter import V1Export, write_v1_zip
from tests import personas
from tests.factories import succeeded
from tests.test_browser import browser, log_in, page, shot  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ONLY_LISTED = "thread_OnlyInTheList0000000000"
UNREAD = "thread_CouldNotBeRead0000000000"


def import_page(tab, live_server):
    tab.goto(f"{live_server.url}/admin/migrations_app/importbatch/new/")


def test_coverage_of_a_batch_with_every_kind_of_difference(page, live_server, tmp_path):  # noqa: F811
    assistants, bundles = generate_dataset(seed=31, thread_count=8)
    bundles = list(bundles)
    b = next(x for x in bundles if x["run_steps"])
    a, e = [x for x in bundles if x is not b][:2]
    export = V1Export(
        [a, b, e],
        assistants,
        failed={UNREAD: "not_found_or_deleted"},
        lost_steps={b["thread"]["id"]: [b["run_steps"][0]["run_id"]]},
    )
    archive = write_v1_zip(tmp_path / "customer-export.zip", export)
    personas.operator("olga")
    log_in(page, live_server, "olga")

    import_page(page, live_server)
    page.fill("#id_pasted", "\n".join([a["thread"]["id"], b["thread"]["id"], ONLY_LISTED, UNREAD]))
    page.click("input[value=Import]")
    expect(page.locator(".messagelist")).to_be_visible()

    import_page(page, live_server)
    page.set_input_files("#id_export_file", str(archive))
    page.click("input[value=Import]")
    expect(page.locator("#batch-layout")).to_contain_text(
        "assistants-thread-export/v1: exported 2026-08-20T14:03:11Z"
    )
    expect(page.locator("#not-exported")).to_contain_text("1 thread the exporter could not read")
    batch = ImportBatch.objects.get(filename="customer-export.zip")
    succeeded(Thread.objects.get(thread_id=a["thread"]["id"]), "conv_a")

    page.reload()
    card = page.locator("#coverage")
    expect(card.locator("#coverage-sets")).to_contain_text(
        "Of the 4 threads this batch named: 3 in your list (ids you imported), 3 held by an "
        "export (and 1 named by an export that could not read it), 1 migrated and verified."
    )
    for kind, count in (("unexported", 1), ("unlisted", 1), ("export_errors", 2), ("verified", 1)):
        expect(card.locator(f"#coverage-{kind} td.count")).to_have_text(str(count))
    shot(page, "coverage-batch")

    card.locator("#coverage-export_errors td.count a").click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#result_list")).to_contain_text(UNREAD)
    expect(page.locator("#result_list")).to_contain_text(b["thread"]["id"])
    assert f"batch={batch.pk}" in page.url
    shot(page, "coverage-export-errors-threads")

    # The whole migration: the id list's thread in no export counts too.
    page.goto(f"{live_server.url}/admin/migrations_app/thread/dashboard/")
    card = page.locator("#coverage")
    for kind, count in (("unexported", 2), ("unlisted", 1), ("export_errors", 2), ("verified", 1)):
        expect(card.locator(f"#coverage-{kind} td.count")).to_have_text(str(count))
    expect(card.locator("#coverage-sums")).to_contain_text(
        "your list 4 = 2 in an export + 2 in no export; the exports 3 = 2 in your list + 1 not "
        "in it; exported with errors 2 = 1 held with the exporter's errors + 1 it could not read"
    )
    shot(page, "coverage-dashboard")
    with page.expect_download() as download:
        card.locator("#coverage-unexported a", has_text="CSV").click()
    with open(download.value.path(), encoding="utf-8") as handle:
        listed = list(csv.DictReader(handle))
    assert sorted((r["thread_id"], r["exports"], r["status"]) for r in listed) == [
        (UNREAD, "unread", "failed"),
        (ONLY_LISTED, "none", "pending"),
    ]
    expect(page.locator("#failures")).to_contain_text("Not in the export")

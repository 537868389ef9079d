"""Coverage: the ids staff listed, the threads the exports hold and the threads migrated, for the
whole migration (a tally the database keeps) and for each import batch; each difference a list
of threads and a CSV."""

import csv
import io
from collections import Counter
from dataclasses import dataclass

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from migrations_app import coverage, intake, states
from migrations_app.models import ImportBatch, Thread
from migrations_app.sandbox import generate_dataset
from migrations_app.sandbox.exporter import V1Export, write_own_jsonl, write_v1_zip
from tests.factories import succeeded

pytestmark = pytest.mark.django_db
THREADS = "admin:migrations_app_thread_changelist"
CSV = "admin:migrations_app_thread_coverage_csv"


def table_counts():
    """The coverage keys counted from the thread table itself."""
    rows = Thread.objects.values_list("listed", "export_state", "status")
    return dict(Counter((listed, state, status == "succeeded") for listed, state, status in rows))


def tally_counts():
    return coverage.for_migration().counts


def id_list(*thread_ids, name="ids.csv"):
    batch = ImportBatch(source=ImportBatch.Source.CSV, filename=name)
    return intake.import_thread_ids(list(thread_ids), batch=batch)


@pytest.fixture
def world(tmp_path):
    """A list batch and a v1 export batch with every kind of difference:

    - a: listed, exported whole, migrated and verified
    - b: listed, exported with an exporter error
    - c: listed only (in no export)
    - e: exported, not listed
    - f: listed, named by the export, which could not read it
    """
    assistants, bundles = generate_dataset(seed=21, thread_count=8)
    bundles = list(bundles)
    with_steps = next(b for b in bundles if b["run_steps"])
    others = [b for b in bundles if b is not with_steps]
    a, b, e = others[0], with_steps, others[1]
    ids = {key: bundle["thread"]["id"] for key, bundle in (("a", a), ("b", b), ("e", e))}
    ids.update(c="thread_OnlyInTheList0000000000", f="thread_CouldNotBeRead0000000000")
    listed = id_list(ids["a"], ids["b"], ids["c"], ids["f"])
    export = V1Export(
        [a, b, e],
        assistants,
        failed={ids["f"]: "not_found_or_deleted"},
        lost_steps={ids["b"]: [b["run_steps"][0]["run_id"]]},
    )
    exported = intake.load_export(write_v1_zip(tmp_path / "export.zip", export))
    succeeded(Thread.objects.get(thread_id=ids["a"]), "conv_a")
    return World(listed, exported, ids)


@dataclass
class World:
    listed: ImportBatch  # the id list
    exported: ImportBatch  # the v1 export
    ids: dict[str, str]  # a, b, c, e, f: see `world`


def names(ids, *keys):
    return sorted(ids[key] for key in keys)


def test_a_batch_with_every_kind_of_difference_counts_each_and_lists_its_threads(
    world, client, operator
):
    exported, ids = world.exported, world.ids
    figures = coverage.for_batch(exported)
    assert (figures.registered, figures.listed, figures.exported, figures.verified) == (4, 3, 3, 1)
    assert {d.kind: n for d, n in figures.differences} == {
        "unexported": 1, "unlisted": 1, "export_errors": 2, "verified": 1,
    }  # fmt: skip
    expected = {"unexported": ["f"], "unlisted": ["e"], "export_errors": ["b", "f"],
                "verified": ["a"]}  # fmt: skip
    for kind, keys in expected.items():
        found = coverage.threads(kind, exported).values_list("thread_id", flat=True)
        assert sorted(found) == names(ids, *keys), kind
        page = client.get(reverse(THREADS), {"coverage": kind, "batch": exported.pk})
        shown = [t.thread_id for t in page.context["cl"].result_list]
        assert sorted(shown) == names(ids, *keys), kind


def test_the_list_batch_and_the_whole_migration_add_up(world):
    of_list = {d.kind: n for d, n in coverage.for_batch(world.listed).differences}
    assert of_list == {"unexported": 2, "unlisted": 0, "export_errors": 2, "verified": 1}
    whole = coverage.for_migration()
    assert (whole.registered, whole.listed, whole.exported, whole.unread) == (5, 4, 3, 1)
    assert whole.listed == whole.listed_and_exported + whole.count("unexported")
    assert whole.exported == whole.listed_and_exported + whole.count("unlisted")
    assert {d.kind: n for d, n in whole.differences} == {
        "unexported": 2, "unlisted": 1, "export_errors": 2, "verified": 1,
    }  # fmt: skip


def test_the_csv_of_a_difference_has_one_row_per_thread(world, client, operator):
    exported, ids = world.exported, world.ids
    response = client.get(reverse(CSV), {"coverage": "export_errors", "batch": exported.pk})
    assert response["Content-Disposition"] == (
        f'attachment; filename="coverage-export_errors-batch-{exported.pk}.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted(row["thread_id"] for row in rows) == names(ids, "b", "f")
    unread = next(row for row in rows if row["thread_id"] == ids["f"])
    assert (unread["status"], unread["in_your_list"], unread["exports"]) == (
        "failed", "yes", "unread",
    )  # fmt: skip
    assert unread["error"].startswith("not exported: not_found_or_deleted, according to")


def test_the_dashboard_and_the_batch_page_show_the_figures_with_their_links(
    world, client, operator
):
    exported = world.exported
    html = client.get(reverse("admin:migrations_app_dashboard")).content.decode()
    assert 'id="coverage-unexported"' in html
    assert "?coverage=unlisted" in html and "coverage.csv?coverage=export_errors" in html
    page = client.get(reverse("admin:migrations_app_importbatch_change", args=[exported.pk]))
    html = page.content.decode()
    assert f"?coverage=unexported&amp;batch={exported.pk}" in html
    assert "Of the 4 threads this batch named" in html
    assert "assistants-thread-export/v1: exported 2026-08-20T14:03:11Z" in html


def test_the_coverage_command_prints_the_figures_and_lists_a_difference(world, capsys):
    exported, ids = world.exported, world.ids
    call_command("coverage")
    out = capsys.readouterr().out
    assert "Coverage of the whole migration: 5 threads" in out
    assert "your list (ids you imported): 4 = 2 in an export + 2 in no export" in out
    assert "1  Exported but not in your list  [unlisted]" in out
    call_command("coverage", "--batch", str(exported.pk), "--list", "unexported")
    assert capsys.readouterr().out.split() == [ids["f"]]


def test_the_tally_matches_the_thread_table_through_every_kind_of_change(world, tmp_path):
    assert tally_counts() == table_counts()
    ids = world.ids
    id_list(ids["e"], "thread_New00000000000000000000")  # listed later: e leaves "unlisted"
    assert tally_counts() == table_counts()
    _, bundles = generate_dataset(seed=21, thread_count=8)
    intake.load_export(write_own_jsonl(tmp_path / "own.jsonl", list(bundles)[:4]))
    assert tally_counts() == table_counts()
    states.queue(list(Thread.objects.values_list("pk", flat=True)), "remigrate", group="g",
                 enqueue=False)  # fmt: skip
    Thread.objects.filter(thread_id=ids["c"]).delete()
    assert tally_counts() == table_counts()
    from migrations_app import tallies

    tallies.compact()  # folds the coverage tally too
    assert tally_counts() == table_counts()
    from migrations_app.models import CoverageTally

    assert CoverageTally.objects.count() == len(table_counts())


def test_the_dashboards_coverage_reads_the_tally_not_the_thread_table(world):
    with CaptureQueriesContext(connection) as queries:
        coverage.for_migration()
    assert len(queries) == 1
    assert "migrations_app_thread" not in queries[0]["sql"].replace("coveragetally", "")


def test_ids_listed_again_become_members_of_the_second_list(world):
    ids = world.ids
    second = id_list(ids["a"], ids["e"], name="second.csv")
    assert (second.new_count, second.duplicate_count) == (0, 2)
    assert coverage.for_batch(second).registered == 2
    assert Thread.objects.get(thread_id=ids["e"]).listed

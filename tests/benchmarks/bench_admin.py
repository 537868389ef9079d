"""Admin page benchmark: 1,000,000 threads in PostgreSQL (loaded with generate_series), then the
server-side time of the thread list, the dashboard and a 250-message thread page.

    make bench   (or: python -m tests.postgres python tests/benchmarks/bench_admin.py)

Server-side time = Django's test client calling the view in-process (queries, template,
rendering; no network). Median of 7 after one warm-up. Targets (issues 5 and 10): list,
filtered list and search < 300 ms at 10⁷ threads (BENCH_ADMIN_THREADS=10000000), dashboard
< 150 ms and thread page < 500 ms at 10⁶.
"""

import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from migrations_app import intake  # noqa: E402
from migrations_app.models import Thread  # noqa: E402
from migrations_app.reasons import error_template  # noqa: E402
from migrations_app.sandbox.data import IdMaker, generate_assistants, generate_thread  # noqa: E402
from tests.benchmarks import common  # noqa: E402

# Measured at each size in turn (the table topped up in between): the dashboard and the thread
# page at 10⁶, the lists at 10⁷. BENCH_ADMIN_THREADS=N measures at N alone.
STAGES = [int(n) for n in os.environ.get("BENCH_ADMIN_THREADS", "1000000,10000000").split(",")]
RUNS = 7

# Coverage (coverage.py): 98 % listed, 80 % exported whole, one in 1,000 exported with errors and
# one in 1,000 named by an export that could not read it; the first 10⁶ threads registered by one
# import batch (its page shows their coverage).
LOAD_THREADS = """
INSERT INTO migrations_app_thread (thread_id, status, updated_at, created_at, message_count,
    items_total, items_committed, attempts, warning_count, error_kind, error_message,
    error_template, conversation_id, requested_action, listed, export_state, import_batch_id)
SELECT 'thread_' || lpad(g::text, 24, '0'),
       (ARRAY['pending','queued','running','succeeded','succeeded','succeeded','failed',
              'cancelled'])[1 + g %% 8],
       now() - (g %% 7200) * interval '1 second',
       now() - g * interval '1 minute',
       g %% 60, g %% 70, g %% 70, 1 + g %% 3, g %% 4,
       CASE WHEN g %% 8 = 6 THEN (ARRAY['transient','auth','not_found'])[1 + g %% 3] ELSE '' END,
       CASE WHEN g %% 8 = 6 AND g %% 3 = 2 THEN 'Fetching from the source failed: The API does '
                 || 'not know this object (HTTP 404): No thread found with id ''thread_'
                 || lpad(g::text, 24, '0') || '''.'
            WHEN g %% 8 = 6 THEN 'The API failed in way ' || (g %% 12) ELSE '' END,
       -- the reason states stores beside the message (reasons.error_template; checked below)
       CASE WHEN g %% 8 = 6 AND g %% 3 = 2 THEN 'Fetching from the source failed: The API does '
                 || 'not know this object (HTTP 404): No thread found with id ''thread_…''.'
            WHEN g %% 8 = 6 THEN 'The API failed in way N' ELSE '' END,
       CASE WHEN g %% 8 IN (3, 4, 5) THEN 'conv_' || lpad(g::text, 24, '0') ELSE '' END,
       CASE WHEN g %% 8 = 1 THEN 'retry' ELSE 'migrate' END,  -- the queued are being retried
       g %% 50 <> 1,
       CASE WHEN g %% 1000 = 7 THEN 'errors' WHEN g %% 1000 = 8 THEN 'unread'
            WHEN g %% 5 = 0 THEN '' ELSE 'whole' END,
       CASE WHEN g <= 1000000 THEN %s END
FROM generate_series(%s, %s) g
"""
BATCH_FILE = "bench-ids.csv"
LOAD_CONVERSATIONS = """
INSERT INTO migrations_app_conversation (thread_id, conversation_id, created_at, items_committed,
    last_item_id, verified_item_count, verified_at, options)
SELECT id, conversation_id, now(), items_committed, '', items_committed, now(), '{}'
FROM migrations_app_thread WHERE status = 'succeeded' AND id > %s
"""


def load(threads):
    """Generated threads up to `threads` (the table topped up), and one 250-message thread."""
    present = Thread.objects.exclude(data__isnull=False).count()
    if present >= threads:
        return
    started = time.perf_counter()
    last_id = Thread.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    from migrations_app.models import ImportBatch

    batch, _ = ImportBatch.objects.get_or_create(
        filename=BATCH_FILE, defaults={"source": "csv", "status": "done"}
    )
    with connection.cursor() as cursor:
        cursor.execute(LOAD_THREADS, [batch.pk, present + 1, threads])
        cursor.execute(LOAD_CONVERSATIONS, [last_id])
    for message, reason in Thread.objects.filter(status="failed").values_list(
        "error_message", "error_template"
    )[:50]:
        assert error_template(message) == reason, (message, reason)
    if Thread.objects.exclude(data=None).exists():
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        print(f"topped up to {threads:,} threads in {time.perf_counter() - started:.0f} s")
        return
    rng = random.Random(4)
    ids = IdMaker(rng)
    assistants = generate_assistants(rng, ids)
    intake.upsert_assistants(assistants)
    intake.store_bundles([generate_thread(rng, ids, assistants, 1, message_count=250)])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(
        f"loaded {threads:,} threads (+ conversations for the succeeded) in "
        f"{time.perf_counter() - started:.0f} s"
    )


def timed(client, url, data=None):
    """Median and max ms of GET `url` (POST `data` to it, if given)."""

    def get():
        return client.post(url, data) if data is not None else client.get(url)

    assert get().status_code == 200, url
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        response = get()
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
    return statistics.median(samples), max(samples)


def table_aggregates_ms():
    """What the dashboard computed before the tallies: its three aggregates over the thread
    table (status counts, the last hour's successes per minute, failure groups), in ms."""
    from django.db.models import Count
    from django.db.models.functions import TruncMinute
    from django.utils import timezone

    def run():
        list(Thread.objects.order_by().values_list("status").annotate(n=Count("pk")))
        since = timezone.now() - timezone.timedelta(minutes=60)
        list(
            Thread.objects.filter(status="succeeded", updated_at__gte=since)
            .annotate(minute=TruncMinute("updated_at"))
            .order_by()
            .values_list("minute")
            .annotate(n=Count("pk"))
        )
        list(
            Thread.objects.filter(status="failed")
            .order_by()
            .values("error_kind", "error_message")
            .annotate(count=Count("pk"))
            .order_by("-count", "error_kind")[:20]
        )

    run()
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def biggest_failure_group(client):
    """The dashboard's first failure group: its threads list link, and the form its remedy
    button sends (the confirmation page, which counts the group's threads)."""
    html = client.get("/admin/migrations_app/thread/dashboard/").text
    row = html[html.index('id="failures"') :]
    link = re.search(r'<td><a href="([^"]+)"', row)[1].replace("&amp;", "&")
    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', row, re.S)
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form[2]))
    fields.pop("csrfmiddlewaretoken", None)
    return link, form[1].replace("&amp;", "&"), fields


def main():
    call_command("migrate", verbosity=0)
    try:
        for threads in STAGES:
            load(threads)
            measure()
    finally:  # the next benchmarks start from an empty database
        from migrations_app import tallies

        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE migrations_app_thread CASCADE")
        tallies.install(force=True)  # TRUNCATE fires no trigger: count again (nothing)
        from migrations_app import coverage

        coverage.install(force=True)


def measure():
    settings.ALLOWED_HOSTS = ["testserver"]
    user, _ = User.objects.get_or_create(username="bench", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    long_thread = Thread.objects.exclude(data=None).order_by("-message_count").first()
    pages = [
        ("thread list", "/admin/migrations_app/thread/", 300),
        ("thread list, failed filter", "/admin/migrations_app/thread/?status__exact=failed", 300),
        (
            "thread list, search by id",
            "/admin/migrations_app/thread/?q=thread_" + "0" * 18 + "123456",
            300,
        ),
        (
            "thread list, coverage filter (exported with errors)",
            "/admin/migrations_app/thread/?coverage=export_errors",
            300,
        ),
        ("dashboard", "/admin/migrations_app/thread/dashboard/", 150),
        (
            f"thread page ({long_thread.message_count} messages)",
            f"/admin/migrations_app/thread/{long_thread.pk}/change/",
            500,
        ),
    ]
    total = Thread.objects.count()
    print(f"{total:,} threads in PostgreSQL; median of {RUNS} (max) server-side:")
    print(
        f"  (before the tallies: the dashboard's three aggregates over the thread table took "
        f"{table_aggregates_ms():.0f} ms in this run, one after the other)"
    )
    group_url, remedy_url, remedy = biggest_failure_group(client)
    pages += [
        ("thread list, the biggest failure group", group_url, 300),
        ("confirming the biggest failure group's remedy", remedy_url, 300, remedy),
    ]
    for name, url, target, *data in pages:
        median, worst = timed(client, url, *data)
        common.row(
            f"{name} at {total:,} threads",
            f"< {target} ms",
            f"{median:.0f} ms (max {worst:.0f})",
            median < target,
        )
    from migrations_app.models import ImportBatch

    batch = ImportBatch.objects.get(filename=BATCH_FILE)
    median, worst = timed(client, f"/admin/migrations_app/importbatch/{batch.pk}/change/")
    common.row(
        f"import batch page with its coverage ({batch.threads.count():,} threads) at "
        f"{total:,} threads",
        "none (not the dashboard)",
        f"{median:.0f} ms (max {worst:.0f})",
    )


if __name__ == "__main__":
    main()

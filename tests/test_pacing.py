"""Request budgets: slots taken several per UPDATE and paced one by one, never shared between
processes; the source's own budget for every read from it; and the worker process's pool."""

import functools
import time
from datetime import UTC, datetime

import pytest
import time_machine
from django_q.models import OrmQ

from migrations_app import openai_client, ratelimit, upload
from migrations_app.models import RateLimit, Thread, ThreadStatus
from migrations_app.ratelimit import SharedRateLimiter
from tests import checks
from tests.cluster import wait_until
from tests.engine import register

pytestmark = pytest.mark.django_db


@pytest.fixture
def frozen(monkeypatch):
    """Time stands still, for the budgets too: their own clock and the shared (database) one."""
    frozen_clocks = functools.partial(SharedRateLimiter, clock=time.time, shared_clock=time.time)
    monkeypatch.setattr(ratelimit, "SharedRateLimiter", frozen_clocks)
    monkeypatch.setattr(ratelimit, "_shared", {})
    with time_machine.travel(datetime(2026, 11, 26, 12, 0, tzinfo=UTC), tick=False) as traveller:
        yield traveller


def limiter(per_minute, waits, clock):
    return SharedRateLimiter(
        "api", per_minute, clock=lambda: clock[0], shared_clock=lambda: clock[0]
    )


# --- slots taken several at a time ------------------------------------------------------------
def test_one_update_takes_a_quarter_second_of_slots_handed_out_evenly_spaced():
    clock, waits = [1000.0], []
    one = limiter(6000, waits, clock)  # a slot every 10 ms: 25 per UPDATE
    assert [round(one.reserve(), 3) for _ in range(26)] == [i / 100 for i in range(26)]
    assert RateLimit.objects.get().requests_total == 50  # two UPDATEs of 25 slots


def test_two_processes_never_hold_the_same_slot():
    clock, waits = [1000.0], []
    one, two = limiter(6000, waits, clock), limiter(6000, waits, clock)
    first = [one.reserve() for _ in range(3)]
    second = [two.reserve() for _ in range(3)]
    assert first == pytest.approx([0.0, 0.01, 0.02])
    assert second == pytest.approx([0.25, 0.26, 0.27])  # after every slot `one` took


def test_slots_nobody_used_in_time_are_dropped_and_given_back_to_the_count():
    clock, waits = [1000.0], []
    one = limiter(6000, waits, clock)
    one.reserve()
    clock[0] += 5  # the process was busy: its 24 other slots are long gone
    assert one.reserve() == 0.0  # a fresh slot, not a burst of stale ones
    # 25 + 25 taken, the 24 dropped given back: 2 used and 24 held for the next requests
    assert RateLimit.objects.get().requests_total == 26


def test_a_429_drops_this_process_slots_and_slows_every_other_process():
    clock, waits = [1000.0], []
    one, two = limiter(6000, waits, clock), limiter(6000, waits, clock)
    one.reserve()
    one.slow_down(3)
    assert one.reserve() == pytest.approx(3.0)
    assert two.reserve() >= 3.0
    assert RateLimit.objects.get().throttled_total == 1


# --- the source's own budget -------------------------------------------------------------------
def test_reads_from_the_source_wait_for_slots_of_the_source_budget(
    sandbox, make_worker, slept, settings, frozen
):
    settings.ASSISTANTS_REQUESTS_PER_MINUTE = 600  # paced at 99 %: a slot every 101 ms
    thread = register(sandbox, minimum=3, fetched=False)
    assert upload.migrate_thread(thread.pk, make_worker()) == "succeeded"
    reads = sum(n for route, n in sandbox.state.request_counts.items() if route.startswith("GET"))
    source_reads = reads - sandbox.state.request_counts["GET list_items"]
    # The destination's slots are µs apart; steps are read several at a time (in any order).
    source_waits = sorted(wait for wait in slept if wait > 0.001)
    interval = 60 / (600 * ratelimit.PACE)
    assert source_waits == pytest.approx([i * interval for i in range(1, source_reads)], abs=1e-3)
    assert RateLimit.objects.filter(name=ratelimit.SOURCE).exists()


def test_a_429_from_the_source_slows_every_worker(sandbox, make_worker, settings, frozen):
    settings.ASSISTANTS_REQUESTS_PER_MINUTE = 600
    thread = register(sandbox, minimum=3, fetched=False)
    sandbox.state.configure_faults(
        retry_after_seconds=3,
        scripted=[{"kind": "rate_limit", "method": "GET", "path_contains": "/runs", "times": 1}],
    )
    assert upload.migrate_thread(thread.pk, make_worker(max_retries=3)) == "succeeded"
    assert RateLimit.objects.get(name=ratelimit.SOURCE).throttled_total == 1
    another_process = ratelimit.SharedRateLimiter(ratelimit.SOURCE)  # the frozen clocks
    assert another_process.reserve() >= 2.9


def test_steps_are_read_only_for_runs_that_have_tools(sandbox, client_for):
    thread_id, runs = next((t, r) for t, r in sandbox.state.runs.items() if len(r) >= 2)
    for run in runs[::2]:
        run["tools"] = []
    sandbox.state.request_counts.clear()
    bundle = openai_client.fetch_thread_bundle(client_for(), thread_id)
    with_tools = sum(1 for run in runs if run["tools"])
    assert sandbox.state.request_counts["GET list_run_steps"] == with_tools
    assert len(bundle["runs"]) == len(runs)


def test_a_process_builds_each_client_once(sandbox):
    assert openai_client.source_client() is openai_client.source_client()
    assert openai_client.destination_client() is openai_client.destination_client()
    assert openai_client.source_client() is not openai_client.destination_client()


# --- the worker process's pool -----------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_task_returns_once_its_threads_are_taken_and_the_pool_finishes_them(sandbox, settings):
    settings.MIGRATION_THREADS_PER_WORKER = 2
    threads = [register(sandbox, minimum=2, maximum=30) for _ in range(3)]
    try:
        result = upload.hand_over([thread.pk for thread in threads])
        assert result == {"handed over": 3}
        assert not Thread.objects.filter(status=ThreadStatus.QUEUED).exists()
        wait_until(
            lambda: Thread.objects.filter(status=ThreadStatus.SUCCEEDED).count() == 3,
            timeout=60,
            what="the pool to finish the threads",
        )
    finally:
        upload.close_pool()
    for thread in threads:
        checks.assert_migrated_exactly_once(sandbox.state, thread)


@pytest.mark.django_db(transaction=True)
def test_a_task_whose_pool_stays_busy_hands_its_threads_back_to_the_queue_in_time(
    sandbox, settings
):
    """A task never waits for a free thread past half of Q_TIMEOUT: django-q2 would kill the
    process, and every thread in flight with it."""
    settings.MIGRATION_THREADS_PER_WORKER = 1
    thread = register(sandbox, minimum=2, maximum=30)
    pool = upload._process_pool()
    pool.slots.acquire()  # its one thread busy with a long thread
    try:
        result = upload.hand_over([thread.pk], seconds=0.3)
    finally:
        pool.slots.release()
        upload.close_pool()
    assert result == {"handed over": 0, "back to the queue": 1}
    thread.refresh_from_db()
    assert thread.status == ThreadStatus.QUEUED
    assert OrmQ.objects.get(pk=thread.queued_task).task["args"][0] == [thread.pk]


def test_workers_keep_to_99_percent_of_the_configured_budget(settings):
    settings.API_REQUESTS_PER_MINUTE = 10_000
    assert ratelimit.shared(ratelimit.DESTINATION).per_minute == pytest.approx(9_900)

"""Reviewer's probes: each test asserts what the design promises and is expected to FAIL
where the review found a gap (run one at a time: pytest tests/test_review_findings.py::NAME)."""

import heapq

import pytest

from migrations_app import openai_client, states, upload
from migrations_app.models import ErrorKind, ThreadStatus
from migrations_app.preview import preview_thread
from migrations_app.ratelimit import LATE, SharedRateLimiter
from tests.engine import queue, register, script
from tests.test_states import (
    LEASE,
    expire_lease,
    frozen_worker,
    on_write,
    ran,
)

pytestmark = pytest.mark.django_db


def stored_items(sandbox, thread):
    thread.refresh_from_db()
    return sandbox.state.conversations[thread.conversation_id]["items"]


# --- 1. a late write whose answer is lost is never taken back -----------------------------------
def test_late_write_with_lost_answer_leaves_duplicates_in_a_succeeded_thread(
    sandbox, make_worker, clock, monkeypatch
):
    thread = register(sandbox, minimum=30)

    def frozen_then_applied_and_dropped(real, args):
        # Frozen after the guard passed (or the request was slow to reach the server): the
        # lease expires, the next worker resumes and finishes the thread.
        clock.shift(LEASE * 3)
        expire_lease(thread)
        assert upload.migrate_thread(thread.pk, make_worker(name="next")) == "succeeded"
        # Now the write lands; the server applies it and the answer is lost (timeout, dropped
        # connection, 502 from a proxy) -- the sandbox's own "drop_after_write" fault.
        script(sandbox, {"kind": "drop_after_write", "path_contains": "/items"})
        with openai_client.guarded_writes(None):  # the guard had already passed
            return real(*args)

    on_write(monkeypatch, 2, frozen_then_applied_and_dropped)
    outcome = upload.migrate_thread(thread.pk, frozen_worker(make_worker))
    thread.refresh_from_db()
    items = stored_items(sandbox, thread)
    print("\nfrozen worker:", outcome, "|", ran(thread, "abandoned").error_message)
    print(
        "thread:",
        thread.status,
        "items_total",
        thread.items_total,
        "conversation holds",
        len(items),
    )
    assert thread.status == ThreadStatus.SUCCEEDED
    assert len(items) == thread.items_total, "a succeeded thread's conversation holds duplicates"


# --- 2. verify takes back the owner's own last item: last_item_id dangles, retry fails forever ----
def test_verify_deletes_the_owners_last_item_and_a_retry_can_never_resume(
    sandbox, make_worker, clock, monkeypatch
):
    thread = register(sandbox, minimum=30, maximum=40)  # two batches: 20 + the rest
    writes = []
    real_add = openai_client.add_items
    late = {}

    def add_items(*args):
        writes.append(args)
        if len(writes) == 2:  # the frozen worker's second batch: it freezes, B takes over
            clock.shift(LEASE * 3)
            expire_lease(thread)
            assert upload.migrate_thread(thread.pk, make_worker(name="B")) == "failed"
            return late["ids"]
        if len(writes) == 3:  # B's second batch; the frozen worker's copy lands just before it
            with openai_client.guarded_writes(None):
                late["ids"] = real_add(*writes[1])
        return real_add(*args)

    monkeypatch.setattr(openai_client, "add_items", add_items)
    real_take_back = upload.take_back

    def take_back_then_listing_fails(run, item_ids):
        real_take_back(run, item_ids)
        if item_ids:  # B's verification took back copies; its next listing meets 5xx
            script(sandbox, {"kind": "server_error", "method": "GET", "path_contains": "/items"},
                   times=10)  # fmt: skip

    monkeypatch.setattr(upload, "take_back", take_back_then_listing_fails)
    upload.migrate_thread(thread.pk, frozen_worker(make_worker))
    sandbox.state.configure_faults(scripted=[])
    thread.refresh_from_db()
    ids = [item["id"] for item in stored_items(sandbox, thread)]
    expected = preview_thread(thread).items
    print("\nafter B:", thread.status, thread.error_kind, "| last_item_id", thread.last_item_id,
          "in conversation:", thread.last_item_id in ids,
          "| holds", len(ids), "of", len(expected))  # fmt: skip
    monkeypatch.setattr(upload, "take_back", real_take_back)
    for attempt in range(2):
        if thread.status == ThreadStatus.SUCCEEDED:  # resumed: no second retry to queue
            break
        queue(thread, "retry")
        outcome = upload.migrate_thread(thread.pk, make_worker(name=f"C{attempt}"))
        thread.refresh_from_db()
        print(f"retry {attempt + 1}:", outcome, thread.error_kind, thread.error_message[:120])
    assert thread.last_item_id in ids, "the thread's last item was deleted by its own verify"
    assert thread.status == ThreadStatus.SUCCEEDED, "retry should resume a complete conversation"


# --- 3. a 404 from the destination is reported as "not found at the source" --------------------
def test_a_destination_404_gets_the_remedy_of_a_source_404(sandbox, make_worker, monkeypatch):
    thread = register(sandbox, minimum=30)

    def conversation_gone(real, args):
        # deleted by someone, or OPENAI_API_KEY now names another project
        sandbox.state.conversations.pop(args[1])
        return real(*args)

    on_write(monkeypatch, 2, conversation_gone)
    assert upload.migrate_thread(thread.pk, make_worker()) == "failed"
    thread.refresh_from_db()
    print("\n", thread.error_kind, "|", thread.get_error_kind_display(), "|", thread.error_message)
    print("remedy:", states.remedy(thread), "| actions:", states.applicable_actions(thread.pk))
    assert thread.error_kind != ErrorKind.NOT_FOUND, "the source was never asked"


# --- 4. the shared budget over a rolling minute, with clocks that disagree -----------------------
def _max_in_window(times, window=60.0):
    times, best, j = sorted(times), 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def _simulate(name, offsets, active, per_minute, threads=16, freeze=None):
    """Processes (each its own limiter and clock offset) whose threads reserve, wait, send and
    reserve again, in simulated real time. Returns the most sends in any 60 s window."""
    now = [0.0]
    # Each process's clock is off by its offset; the database's clock (which times the slots)
    # is the simulation's true time.
    limiters = [
        SharedRateLimiter(name, per_minute, clock=lambda o=o: 1_000_000.0 + now[0] + o,
                          shared_clock=lambda: 1_000_000.0 + now[0])
        for o in offsets
    ]  # fmt: skip
    events = [(active[p][0], p, k) for p in range(len(offsets)) for k in range(threads)]
    heapq.heapify(events)
    sends = []
    while events:
        t, p, k = heapq.heappop(events)
        if not active[p][0] <= t < active[p][1]:
            if t < active[p][0]:
                heapq.heappush(events, (active[p][0], p, k))
            continue
        now[0] = t
        send = t + limiters[p].reserve()
        if freeze and p in freeze[0] and freeze[1] <= send < freeze[2]:
            # The process was frozen (GC, SIGSTOP, VM pause) holding its slot. Right before a
            # request leaves, the engine's send guard (upload.Run.before_send) gives up a slot
            # it missed by more than LATE: the thread takes a new one when it thaws.
            if freeze[2] - send > LATE:
                heapq.heappush(events, (freeze[2], p, k))
                continue
            send = freeze[2]
        sends.append(send)
        heapq.heappush(events, (send + 0.001, p, k))
    return _max_in_window(sends)


@pytest.mark.parametrize(
    "offsets, active, freeze, threads",
    [
        ((0.0, 0.0), ((0, 130), (0, 130)), None, 16),
        ((-2.0, 0.0), ((0, 130), (0, 130)), None, 16),
        ((-2.0, 0.0), ((0, 62), (58, 130)), None, 16),
        ((2.0, 0.0), ((58, 130), (0, 62)), None, 16),
        ((0.0, -2.0), ((0, 61), (0, 130)), None, 16),
        ((0.0, 2.0), ((0, 130), (0, 61)), None, 16),
        ((0.0, 0.0), ((0, 130), (0, 130)), ((0,), 60.0, 65.0), 16),
        ((-2.0, 0.0), ((0, 60), (60, 130)), None, 16),
        ((0.0, 2.0), ((0, 60), (60, 130)), None, 16),
        ((0.0, 0.0), ((0, 130), (0, 130)), ((0, 1), 60.0, 65.0), 16),
        ((-2.0, 0.0, 0.0), ((0, 60), (60, 130), (60, 130)), ((1, 2), 70.0, 75.0), 16),
        ((-2.0, 0.0), ((0, 60), (60, 130)), None, 128),
        ((0.0, 2.0), ((0, 60), (60, 130)), None, 128),
    ],
)
def test_the_rolling_minute_never_exceeds_the_budget(offsets, active, freeze, threads):
    budget = 3000
    name = f"review-{abs(hash((offsets, active, freeze, threads)))}"
    most = _simulate(name, offsets, active, budget * 0.99, freeze=freeze, threads=threads)
    print(f"\noffsets {offsets} active {active} freeze {freeze} threads {threads}: "
          f"{most} in the worst minute")  # fmt: skip
    assert most <= budget

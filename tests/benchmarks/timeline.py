"""Where a benchmark run's wall time went, thread by thread: the requests each migrated thread
sent (from the lines `timeline/sitecustomize.py` writes when BENCH_TIMELINE names a folder) laid
over its attempt (taken → verified, from the Attempt rows).

For each thread: how long it waited in the queue after "migrate", then, from its take to its
verification, the time some request of it was on the wire (latency), the time its requests spent
in the request hooks before leaving (the send guard, the source's pacing) and the time nothing of
it was in flight at all (the worker's own work: the database, conversion, the CPU it waited for).
Also: how many threads were in flight on average against the slots the cluster has, and the
sequential rounds of requests a thread's critical path took.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass
class Request:
    started: float  # handed to httpx
    wire: float  # on the wire (after the request hooks)
    ended: float  # its answer read
    pid: int
    thread: str  # the OS thread that sent it
    method: str
    path: str
    status: int


def read(directory: str | Path) -> list[Request]:
    requests = []
    for path in Path(directory).glob("*.tsv"):
        for line in path.read_text().splitlines():
            started, wire, ended, pid, thread, method, url, status = line.split("\t")
            requests.append(Request(float(started), float(wire), float(ended), int(pid), thread,
                                    method, url, int(status)))  # fmt: skip
    return sorted(requests, key=lambda request: request.started)


def _union(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def _rounds(spans: list[tuple[float, float]]) -> int:
    """Sequential rounds: requests that overlap the round's first request count as one."""
    rounds, end = 0, float("-inf")
    for start, stop in sorted(spans):
        if start >= end:
            rounds += 1
            end = stop
        else:
            end = max(end, stop)
    return rounds


def _seconds(moment: datetime) -> float:
    return moment.timestamp()


def report(directory: str | Path, pressed: float, slots: int) -> dict[str, float]:
    """Print where the time went for the threads migrated since `pressed` (time.time() when
    "migrate" was pressed); `slots`: threads the cluster keeps in flight. Returns the means."""
    from migrations_app.models import Attempt

    requests = read(directory)
    attempts = list(
        Attempt.objects.filter(
            action=Attempt.Action.MIGRATE, outcome=Attempt.Outcome.SUCCEEDED,
            finished_at__isnull=False,
        ).values_list("thread__thread_id", "actor_label", "started_at", "finished_at")
    )  # fmt: skip
    Path(directory, "attempts.json").write_text(json.dumps(
        [[thread_id, label, _seconds(start), _seconds(end), pressed]
         for thread_id, label, start, end in attempts]
    ))  # fmt: skip
    if not attempts or not requests:
        print("  timeline: nothing recorded")
        return {}
    by_sender: dict[tuple[int, str], list[Request]] = defaultdict(list)
    by_thread_id: dict[str, list[Request]] = defaultdict(list)
    for request in requests:
        by_sender[request.pid, request.thread].append(request)
        parts = request.path.split("/")
        if len(parts) > 3 and parts[2] == "threads":
            by_thread_id[parts[3]].append(request)
    rows = []
    for thread_id, label, started_at, finished_at in attempts:
        _, pid, name = label.removeprefix("worker ").rsplit(":", 2)
        start, end = _seconds(started_at), _seconds(finished_at)
        own = [r for r in by_sender[int(pid), name] if start <= r.started <= end]
        mine = {id(r): r for r in own + by_thread_id.get(thread_id, [])}.values()
        wire = [(r.wire, r.ended) for r in mine]
        in_flight = _union([(r.started, r.ended) for r in mine])
        rows.append({
            "queued": start - pressed,
            "duration": end - start,
            "latency": _union(wire),
            "hooks": in_flight - _union(wire),
            "ours": end - start - in_flight,
            "requests": len(wire),
            "rounds": _rounds(wire),
        })  # fmt: skip
    first = min(_seconds(a[2]) for a in attempts)
    last = max(_seconds(a[3]) for a in attempts)
    busy = sum(row["duration"] for row in rows)
    means = {key: statistics.fmean(row[key] for row in rows) for key in rows[0]}
    print(
        f"  timeline of {len(rows)} threads, {len(requests)} requests: first take "
        f"{first - pressed:.2f} s after migrate, last verified at {last - pressed:.2f} s; "
        f"threads in flight on average {busy / (last - first):.1f} of {slots} slots",
        flush=True,
    )
    queued = sorted(row["queued"] for row in rows)
    print(
        f"  waited in the queue after migrate: mean {means['queued']:.2f} s, max {queued[-1]:.2f}"
    )
    durations = sorted(row["duration"] for row in rows)
    print(
        f"  per thread, mean (taken → verified {means['duration']:.2f} s, p50 "
        f"{durations[len(durations) // 2]:.2f}, max {durations[-1]:.2f}): on the wire "
        f"{means['latency']:.2f} s in {means['rounds']:.1f} rounds of {means['requests']:.1f} "
        f"requests; in the request hooks only {means['hooks']:.2f} s; nothing in flight (the "
        f"worker's own time) {means['ours']:.2f} s",
        flush=True,
    )
    return means

"""Lookup API benchmark: 10,000,000 threads in PostgreSQL (three in eight migrated, each with its
verified conversation; loaded with generate_series as bench_admin.py does), then the latency of
the lookup API through HTTP, as an application sees it: gunicorn (2 sync workers, DEBUG off) on
loopback, one client on a kept-alive connection, each request timed from send to the last byte.

    make bench   (or: python -m tests.postgres python tests/benchmarks/bench_api.py)

Single lookups (GET /api/v1/threads/<id>) of random migrated threads, then bulk lookups (POST
/api/v1/threads/lookup) of 1,000 random ids (one in a hundred unknown). Targets (issue 19) at 10⁷
threads: p99 < 20 ms single, p99 < 200 ms for 1,000 ids. BENCH_API_THREADS=N for another size.
"""

import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

import django  # noqa: E402

django.setup()

import httpx2  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from migrations_app import api_tokens, tallies  # noqa: E402
from migrations_app.models import Thread  # noqa: E402
from tests.benchmarks import common  # noqa: E402
from tests.benchmarks.bench_admin import LOAD_CONVERSATIONS, LOAD_THREADS  # noqa: E402

THREADS = int(os.environ.get("BENCH_API_THREADS", "10000000"))
SINGLE = int(os.environ.get("BENCH_API_SINGLE", "3000"))
BULK = int(os.environ.get("BENCH_API_BULK", "200"))
WARMUP = 100


def load(threads: int) -> None:
    present = Thread.objects.count()
    if present >= threads:
        return
    started = time.perf_counter()
    last_id = Thread.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    with connection.cursor() as cursor:
        cursor.execute(LOAD_THREADS, [present + 1, threads])
        cursor.execute(LOAD_CONVERSATIONS, [last_id])
        cursor.execute("VACUUM ANALYZE")
    print(f"loaded {threads:,} threads in {time.perf_counter() - started:.0f} s", flush=True)


def thread_id(number: int) -> str:
    return f"thread_{number:024d}"


def migrated_ids(rng: random.Random, count: int, threads: int) -> list[str]:
    """Random threads the load made succeeded (number % 8 in 3, 4, 5)."""
    ids = []
    while len(ids) < count:
        number = rng.randint(1, threads)
        if number % 8 in (3, 4, 5):
            ids.append(thread_id(number))
    return ids


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(port: int) -> subprocess.Popen:
    environment = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + "x" * 50,
        "HTTPS": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "console.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--log-level", "warning"],
        cwd=ROOT, env=environment, start_new_session=True,
    )  # fmt: skip
    for _ in range(300):
        try:
            httpx2.get(f"http://127.0.0.1:{port}/api/v1/schema", timeout=2)
            return process
        except httpx2.TransportError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not start")


def timed(send, requests) -> list[float]:
    samples = []
    for request in requests:
        started = time.perf_counter()
        response = send(request)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (response.status_code, response.text[:200])
    return samples


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(name: str, samples: list[float], target: float) -> None:
    p50, p99 = statistics.median(samples), percentile(samples, 0.99)
    if os.environ.get("BENCH_API_TAIL"):
        print("  slowest:", [round(x) for x in sorted(samples)[-12:]], flush=True)
    common.row(
        f"lookup API, {name}, at {Thread.objects.count():,} threads (HTTP, gunicorn)",
        f"p99 < {target:.0f} ms",
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(samples):.1f} ms ({len(samples)} requests)",
        p99 < target,
    )


def main() -> None:
    call_command("migrate", verbosity=0)
    print(common.machine(), flush=True)
    try:
        load(THREADS)
        _, raw = api_tokens.create_token("bench", requests_per_minute=10**9)
        port = free_port()
        server = serve(port)
        try:
            measure(port, raw)
        finally:
            common.stop_group(server)
    finally:  # the next benchmarks start from an empty database
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE migrations_app_thread, migrations_app_apitoken CASCADE")
        tallies.install(force=True)


def measure(port: int, raw: str) -> None:
    rng = random.Random(19)
    threads = Thread.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    headers = {"Authorization": f"Bearer {raw}"}
    with httpx2.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client:

        def get(thread: str) -> httpx2.Response:
            return client.get(f"/api/v1/threads/{thread}")

        def post(ids: list[str]) -> httpx2.Response:
            return client.post("/api/v1/threads/lookup", json={"thread_ids": ids})

        timed(get, migrated_ids(rng, WARMUP, threads))
        single = timed(get, migrated_ids(rng, SINGLE, threads))
        answer = get(migrated_ids(rng, 1, threads)[0]).json()
        assert answer["conversation_id"], answer
        report("single lookup", single, 20)

        def thousand() -> list[str]:
            ids = migrated_ids(rng, 990, threads) + [f"thread_unknown{i}" for i in range(10)]
            rng.shuffle(ids)
            return ids

        timed(post, [thousand() for _ in range(5)])
        bulk = timed(post, [thousand() for _ in range(BULK)])
        assert len(post(thousand()).json()["unknown"]) == 10
        report("1,000-id lookup", bulk, 200)


if __name__ == "__main__":
    main()

"""Not in `make bench`: the engine's CPU per thread without a cluster, one process migrating
threads one after another (`upload.migrate_thread`) against the sandbox in its own process at
0 ms, so nothing but the engine's own work is timed; also the database statements one thread
costs, by kind. For quick comparisons of a change, side by side with the commit before it.

    python -m tests.postgres python tests/benchmarks/engine_cpu.py

Knobs: ENGINE_THREADS (default 300), ENGINE_FETCH=1 (from ids: each thread fetched first),
ENGINE_SQL=1 (print one thread's statements), BENCH_PORT.
"""

import collections
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
PORT = int(os.environ.get("BENCH_PORT", 8768))
os.environ.update(
    DJANGO_SETTINGS_MODULE="console.settings",
    SANDBOX_PORT=str(PORT),
    API_REQUESTS_PER_MINUTE="1000000",
    ASSISTANTS_REQUESTS_PER_MINUTE="1000000",
)
os.environ.setdefault("SECRET_KEY", "bench-only-key")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from migrations_app import intake, states, upload  # noqa: E402
from migrations_app.models import Thread, ThreadStatus  # noqa: E402
from migrations_app.sandbox import generate_dataset  # noqa: E402
from tests.benchmarks import common  # noqa: E402

THREADS = int(os.environ.get("ENGINE_THREADS", 300))
FETCH = os.environ.get("ENGINE_FETCH") == "1"


def main() -> None:
    call_command("migrate", verbosity=0)
    bundles = list(generate_dataset(seed=1, thread_count=THREADS)[1])
    server = common.sandbox(PORT, THREADS, 0)
    try:
        if FETCH:
            ids = Path("/tmp/engine-cpu-ids.txt")
            ids.write_text("\n".join(bundle["thread"]["id"] for bundle in bundles))
            call_command("import_threads", str(ids), verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115
        else:
            intake.store_bundles(bundles)
        pks = list(Thread.objects.order_by("pk").values_list("pk", flat=True))
        states.queue(pks, "migrate", group="engine cpu", enqueue=False)
        worker = upload.Worker()
        upload.migrate_thread(pks[0], worker)  # connections, imports, the budget's row
        with CaptureQueriesContext(connection) as queries:
            upload.migrate_thread(pks[1], worker)
        kinds = collections.Counter(query["sql"].split()[0] for query in queries.captured_queries)
        print(f"statements for one thread: {len(queries.captured_queries)} {dict(kinds)}")
        if os.environ.get("ENGINE_SQL"):
            for query in queries.captured_queries:
                print("   ", query["sql"][:200])
        cpu, wall = time.process_time(), time.perf_counter()
        for pk in pks[2:]:
            upload.migrate_thread(pk, worker)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        done = Thread.objects.filter(status=ThreadStatus.SUCCEEDED).count()
        source = "fetch + upload" if FETCH else "upload from the mirror"
        print(
            f"{source}: {(cpu / (len(pks) - 2)) * 1000:.2f} ms CPU per thread, "
            f"{wall / (len(pks) - 2) * 1000:.2f} ms wall; {done} of {len(pks)} succeeded; "
            f"{common.machine()}"
        )
    finally:
        common.stop_group(server)


if __name__ == "__main__":
    main()

"""Memory of one long thread: a 10,000-message thread fetched, converted, uploaded and verified by
one in-process worker against the sandbox. Prints the process's peak RSS before and after the
migration (the growth is the fetch, the conversion and the verification's listing) and its wall
time. The same script runs on any release (intake.fetch_for_staff, actions.apply,
upload.migrate_thread), so it measures before and after.

    python -m tests.postgres python tests/benchmarks/bench_long_thread.py

Knobs: BENCH_MESSAGES (10000).
"""

import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
os.environ.setdefault("DEBUG", "true")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.test import override_settings  # noqa: E402

from migrations_app import actions, intake, upload  # noqa: E402
from migrations_app.models import Thread  # noqa: E402
from migrations_app.sandbox import SandboxServer, seeded_state  # noqa: E402

MESSAGES = int(os.environ.get("BENCH_MESSAGES", 10_000))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def long_thread(state, count: int) -> str:
    """One of the seeded threads, grown to `count` messages of varied text."""
    thread_id = next(iter(state.threads))
    messages = state.messages[thread_id]
    base = messages[0]["created_at"]
    template = messages[: min(len(messages), 20)]
    grown = []
    for index in range(count):
        message = dict(template[index % len(template)])
        message["id"] = f"msg_long{index:07d}"
        message["created_at"] = base + index
        message["run_id"] = None
        grown.append(message)
    state.messages[thread_id] = grown
    state.runs[thread_id] = []
    return thread_id


def main() -> None:
    call_command("migrate", verbosity=0)
    Thread.objects.all().delete()
    with SandboxServer(state=seeded_state(seed=3, thread_count=2)) as sandbox:
        thread_id = long_thread(sandbox.state, MESSAGES)
        pointed = override_settings(
            SANDBOX_URL=sandbox.url, OPENAI_API_KEY=None, ASSISTANTS_API_KEY=None,
            OPENAI_BASE_URL=None, ASSISTANTS_BASE_URL=None, API_REQUESTS_PER_MINUTE=10**7,
            ASSISTANTS_REQUESTS_PER_MINUTE=10**7,
        )  # fmt: skip
        with pointed:
            Thread.objects.create(thread_id=thread_id)
            intake.fetch_for_staff(thread_id)
            actions.apply("migrate", Thread.objects.all(), actor_label="bench", enqueue=False)
            thread = Thread.objects.get(thread_id=thread_id)
            before = peak_mb()
            started = time.monotonic()
            outcome = upload.migrate_thread(thread.pk, upload.Worker())
            elapsed = time.monotonic() - started
        thread.refresh_from_db()
        stored = len(sandbox.state.conversations[thread.conversation_id]["items"])
    print(
        f"{MESSAGES:,}-message thread: {outcome} ({stored:,} items stored, "
        f"{thread.items_total:,} expected) in {elapsed:.1f} s; peak RSS {before:.0f} MB before "
        f"the migration, {peak_mb():.0f} MB after (+{peak_mb() - before:.0f} MB)"
    )


if __name__ == "__main__":
    main()

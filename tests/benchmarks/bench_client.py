"""Threads or an event loop? The SDK's sync client in a pool of threads against its async client
on one asyncio loop, side by side in one run: the same requests (create a conversation, then
list its items) to the sandbox in its own process at 50 ms, 32 in flight. Prints the client
process's CPU milliseconds per request (the cost that concurrency model adds to a worker) and
the requests per second.

    python -m tests.postgres python tests/benchmarks/bench_client.py   (or: make bench)

This is the measurement behind keeping threads in the workers (see README "Workers and tuning").
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import openai

from tests.benchmarks import common

PORT = 8767
IN_FLIGHT = 32
PAIRS = int(os.environ.get("BENCH_CLIENT_PAIRS", 600))  # create + list each
URL = f"http://127.0.0.1:{PORT}/v1"


def threads() -> tuple[float, float]:
    client = openai.OpenAI(api_key="bench", base_url=URL, max_retries=0)

    def pair(_: int) -> None:
        conversation = client.conversations.create(metadata={"bench": "sync"})
        client.conversations.items.with_raw_response.list(conversation.id, limit=100)

    cpu, wall = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        list(pool.map(pair, range(PAIRS)))
    return time.process_time() - cpu, time.perf_counter() - wall


def event_loop() -> tuple[float, float]:
    async def main() -> None:
        client = openai.AsyncOpenAI(api_key="bench", base_url=URL, max_retries=0)
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def pair() -> None:
            async with gate:
                conversation = await client.conversations.create(metadata={"bench": "async"})
                await client.conversations.items.with_raw_response.list(conversation.id, limit=100)

        await asyncio.gather(*(pair() for _ in range(PAIRS)))
        await client.close()

    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(main())
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    server = common.sandbox(PORT, threads=1, latency_ms=50)
    try:
        threads()  # warm-up: imports, connections
        event_loop()
        results = {"threads (sync client)": threads(), "asyncio (async client)": event_loop()}
    finally:
        common.stop_group(server)
    requests = 2 * PAIRS
    print(f"client: {requests} requests, {IN_FLIGHT} in flight, 50 ms; {common.machine()}")
    for name, (cpu, wall) in results.items():
        print(
            f"  {name}: {cpu / requests * 1000:.2f} ms CPU per request, "
            f"{requests / wall:.0f} requests/s"
        )


if __name__ == "__main__":
    main()

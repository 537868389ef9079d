"""What the benchmarks share: the sandbox as its own process, a real cluster, CPU and memory
of process groups, and the result rows that `run_all.py` prints as one table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2

ROOT = Path(__file__).resolve().parents[2]
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
ROWS_FILE = os.environ.get("BENCH_ROWS_FILE", "")


def row(figure: str, target: str, measured: str, ok: bool | None = None) -> None:
    """One row of issue 10's table: printed now, and collected by run_all.py for the summary."""
    verdict = "" if ok is None else (" — ok" if ok else " — NOT REACHED")
    print(f"  [{figure}] target {target}; measured {measured}{verdict}", flush=True)
    if ROWS_FILE:
        with open(ROWS_FILE, "a") as handle:
            handle.write(json.dumps([figure, target, measured, ok]) + "\n")


def sandbox(
    port: int, threads: int, latency_ms: float, rpm_cap: int = 0, extra: Sequence[str] = ()
) -> subprocess.Popen:
    """`manage.py run_sandbox` in its own session (with `extra` options); returns once it
    answers."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_sandbox", "--port", str(port), "--threads",
         str(threads), "--latency-ms", str(latency_ms), "--rpm-cap", str(rpm_cap), *extra],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    for _ in range(600):
        try:
            httpx2.get(f"http://127.0.0.1:{port}/_sandbox/health")
            return process
        except httpx2.TransportError:
            time.sleep(0.1)
    raise RuntimeError("sandbox did not start")


def sandbox_state(port: int) -> dict[str, Any]:
    return httpx2.get(f"http://127.0.0.1:{port}/_sandbox/state?items=0", timeout=30).json()


def stop_group(process: subprocess.Popen, timeout: float = 20) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # django-q2 can hang in its own stop; end it
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def cluster(port: int, log_name: str, **env: Any) -> subprocess.Popen:
    """`manage.py qcluster` in its own session, pointed at the sandbox on `port`."""
    environment = {
        **os.environ,
        "SANDBOX_PORT": str(port),
        "DEBUG": "false",  # as in production: no query log
        **{key: str(value) for key, value in env.items()},
    }
    log = open(f"/tmp/{log_name}.log", "w")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def _stat(pid: str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def session_usage(session_id: int) -> tuple[float, float]:
    """(CPU seconds, resident MB) summed over every live process of a session; the CPU includes
    that of the processes they waited for (a worker that ended inside a window would otherwise
    take its CPU with it, and the window's figure could even come out negative)."""
    cpu, rss = 0.0, 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fields = _stat(pid)
        if fields and int(fields[3]) == session_id:
            cpu += sum(int(tick) for tick in fields[11:15]) / TICKS
            rss += int(fields[21]) * PAGE
    return cpu, rss / 1e6


def postgres_cpu() -> float:
    """CPU seconds of the benchmark's PostgreSQL (the postmaster on DATABASE_URL's port and its
    children, live ones only)."""
    port = os.environ.get("DATABASE_URL", "").rsplit(":", 1)[-1].split("/")[0]
    postmaster = None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"postgres" in command and f"-p {port} ".encode() in command:
            postmaster = pid
            break
    if postmaster is None:
        return 0.0
    cpu = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fields = _stat(pid)
        if fields and (pid == postmaster or fields[1] == postmaster):
            cpu += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / TICKS
    return cpu


def machine() -> str:
    cores = os.cpu_count()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{cores} cores, load average {load} (1/5/15 min) at start"


# --- profiles -----------------------------------------------------------------------------------
PROFILE_DIR = os.environ.get("BENCH_PROFILE", "")  # a folder: py-spy profiles of the cluster


@contextmanager
def profiled(process: subprocess.Popen, name: str) -> Iterator[None]:
    """With BENCH_PROFILE set: py-spy samples `process` and its children (the whole cluster)
    while the block runs, then the profile's top lines are printed (the raw profile is kept in
    the folder, for flamegraph.pl)."""
    if not PROFILE_DIR:
        yield
        return
    Path(PROFILE_DIR).mkdir(parents=True, exist_ok=True)
    output = Path(PROFILE_DIR) / f"{name}.txt"
    spy = subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(process.pid),
         "--subprocesses", "--gil", "--nonblocking", "--rate", "50", "--format", "raw",
         "-o", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
        print_profile(output)


def _function(frame: str) -> str:
    """`name (path:line)` as `name (short path)`."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "python3.11/", "python3.12/", "python3.13/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def _package(frame: str) -> str:
    path = _function(frame).rsplit(" (", 1)[-1].rstrip(")")
    return path.split("/", 1)[0] if "/" in path else path


def print_profile(path: Path, top: int = 12) -> None:
    """The top lines of a py-spy raw profile: samples by the package running (the stack's last
    frame), the functions running, and the console's own functions with what they called."""
    if not path.exists():
        print(f"  profile: {path} was not written", flush=True)
        return
    own: dict[str, int] = {}
    by_package: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";")[1:] if " (" in frame]
        if not frames:
            continue
        total += count
        leaf = _function(frames[-1])
        own[leaf] = own.get(leaf, 0) + count
        package = _package(frames[-1])
        by_package[package] = by_package.get(package, 0) + count
        for function in {_function(frame) for frame in frames}:
            if "migrations_app/" in function or "django_q/" in function:
                inclusive[function] = inclusive.get(function, 0) + count

    def lines(counts: dict[str, int], limit: int) -> str:
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:limit]
        return "\n".join(f"    {count / total:6.1%}  {name}" for name, count in ranked)

    print(f"  profile {path.name}: {total} samples of threads holding the GIL (py-spy --gil, 50/s)")
    print(f"  by package running:\n{lines(by_package, top)}")
    print(f"  functions running (self):\n{lines(own, top)}")
    print(f"  the console's and django-q2's functions (inclusive):\n{lines(inclusive, 2 * top)}",
          flush=True)  # fmt: skip

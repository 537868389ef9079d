"""Every benchmark, one after the other; each prints its own figures, then the rows of issue 10's
table (figure, target, measured) are printed together at the end."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


# Benchmarks that write ten million rows: run last (bench_api.py, then bench_admin.py).
TEN_MILLION_ROWS = ("bench_api.py", "bench_admin.py")


def _admin_last(script: Path) -> tuple[int, str]:
    """bench_admin writes ten million rows: PostgreSQL's checkpoints and autovacuum after them
    went on into the next benchmarks and cost the rate-cap run's CPU figure a quarter (27 CPU-s
    per 1,000 threads right after it, 19-23 alone). bench_api does too."""
    if script.name in TEN_MILLION_ROWS:
        return 1 + TEN_MILLION_ROWS.index(script.name), script.name
    return 0, script.name


def main() -> int:
    failed = []
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as rows_file:
        env = {**os.environ, "BENCH_ROWS_FILE": rows_file.name}
        for script in sorted(HERE.glob("bench_*.py"), key=_admin_last):
            print(f"== {script.name}", flush=True)
            if subprocess.run([sys.executable, str(script)], env=env).returncode:
                failed.append(script.name)
        rows = [json.loads(line) for line in rows_file if line.strip()]
    print("\n== issue 10's figures, this run")
    print("| figure | target | measured | |")
    print("| --- | --- | --- | --- |")
    for figure, target, measured, ok in rows:
        verdict = "" if ok is None else ("ok" if ok else "not reached")
        print(f"| {figure} | {target} | {measured} | {verdict} |")
    if failed:
        print(f"benchmarks that stopped with an error: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Run a command against a throw-away PostgreSQL server started for it.

    python -m tests.postgres pytest -x

Starts a private cluster in a temporary folder (as the `postgres` user when run as root, since
PostgreSQL refuses root), exports DATABASE_URL, runs the command, stops the server and removes the
folder, whatever the command's outcome. Tuned for tests: no fsync, nothing durable.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

SEARCH_PATH = ["/usr/local/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin"]


def find_binary(name):
    found = shutil.which(name) or next(
        (f"{d}/{name}" for d in SEARCH_PATH if Path(f"{d}/{name}").exists()), None
    )
    if not found:
        sys.exit(f"tests.postgres: {name} not found; install PostgreSQL server binaries")
    return found


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_server_user(args):
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@contextmanager
def postgres_server():
    folder = Path(tempfile.mkdtemp(prefix="console-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port = free_port()
    run = lambda args: subprocess.run(as_server_user(args), check=True, stdout=subprocess.DEVNULL)  # noqa: E731
    try:
        run([find_binary("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--no-sync"])  # fmt: skip
        options = (
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        run([find_binary("pg_ctl"), "-D", str(data), "-o", options, "-l",
             str(folder / "server.log"), "-w", "start"])  # fmt: skip
        yield f"postgres://postgres@127.0.0.1:{port}/console"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                as_server_user([find_binary("pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                stdout=subprocess.DEVNULL,
            )
        shutil.rmtree(folder, ignore_errors=True)


def create_database(url):
    """The "console" database is for commands that are not tests; Django's test runner makes its
    own test_console beside it."""
    import psycopg

    server_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute("CREATE DATABASE console")


def main(argv):
    if not argv:
        sys.exit("usage: python -m tests.postgres COMMAND [ARGS…]")
    # SIGTERM (CI's timeout, kill) must still stop the server and remove its folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with postgres_server() as url:
        env = {**os.environ, "DATABASE_URL": url}
        create_database(url)
        return subprocess.run(argv, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

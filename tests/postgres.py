"""Run a command against a throw-away PostgreSQL server started for it.

    python -m tests.postgres pytest -x
    python -m tests.postgres --install     # the server binaries, from Debian's package if missing

Starts a private cluster in a temporary folder (as the `postgres` user when run as root, since
PostgreSQL refuses root), exports DATABASE_URL, runs the command, stops the server and removes the
folder, whatever the command's outcome. Tuned for tests: no fsync, nothing durable.

The server binaries (initdb, pg_ctl, postgres) are looked for on PATH, then where Debian's
packages put them (/usr/lib/postgresql/<version>/bin, newest version first).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

LIBRARY = Path("/usr/lib/postgresql")  # Debian's packages: one <version>/bin per major version
LOCAL_BIN = Path("/usr/local/bin")  # a build from source, even when PATH leaves it out
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
CREATECLUSTER_CONF = Path("/etc/postgresql-common/createcluster.conf")


def _version(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return (0,)


def search_path() -> list[Path]:
    versions = sorted(LIBRARY.glob("*/bin"), key=lambda d: _version(d.parent.name), reverse=True)
    return [LOCAL_BIN, *versions]


def locate(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return next((str(d / name) for d in search_path() if (d / name).is_file()), None)


def find_binary(name: str) -> str:
    found = locate(name)
    if not found:
        sys.exit(
            f"tests.postgres: {name} not found; run `make postgres` (Debian's postgresql "
            "package) or put PostgreSQL's server binaries on PATH"
        )
    return found


def disable_main_cluster(conf: Path) -> None:
    """Debian creates (and, where services run, starts) a "main" cluster when the server package
    is installed; the tests start their own. Leaves an administrator's explicit choice alone."""
    text = conf.read_text(encoding="utf-8") if conf.exists() else ""
    if re.search(r"^\s*create_main_cluster\s*=", text, flags=re.MULTILINE):
        return
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(text + "create_main_cluster = false\n", encoding="utf-8")


def install(run: Callable[..., object] = subprocess.run) -> None:
    """The server binaries from Debian's `postgresql` package (its default major version)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt_install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
    run(["apt-get", "update", "-qq"], check=True, env=env)
    run([*apt_install, "postgresql-common"], check=True, env=env)
    disable_main_cluster(CREATECLUSTER_CONF)
    run([*apt_install, "postgresql"], check=True, env=env)


def ensure_installed(run: Callable[..., object] = subprocess.run) -> int:
    """Installs the server binaries when one is missing; silent when they are all there."""
    if all(locate(name) for name in SERVER_BINARIES):
        return 0
    if not shutil.which("apt-get"):
        sys.exit(
            "tests.postgres: PostgreSQL's server binaries (initdb, pg_ctl, postgres) are not "
            "installed and there is no apt-get to install them: install PostgreSQL 15 or later "
            "and put its bin folder on PATH"
        )
    print("tests.postgres: installing Debian's postgresql package (the test database's server)")
    install(run)
    missing = [name for name in SERVER_BINARIES if not locate(name)]
    if missing:
        sys.exit(f"tests.postgres: still missing after apt-get: {', '.join(missing)}")
    return 0


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


def main(argv: list[str]) -> int:
    if not argv:
        sys.exit("usage: python -m tests.postgres COMMAND [ARGS…] | --install")
    if argv == ["--install"]:
        return ensure_installed()
    # SIGTERM (CI's timeout, kill) must still stop the server and remove its folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with postgres_server() as url:
        env = {**os.environ, "DATABASE_URL": url}
        create_database(url)
        return subprocess.run(argv, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

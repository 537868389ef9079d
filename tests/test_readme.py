"""The README's commands as a newcomer types them: every `manage.py` line with the virtualenv's
Python and a command that exists, the local block run as written on a fresh database, and the
fault settings the rehearsal section posts accepted by the sandbox."""

import dataclasses
import os
import re
import shlex
import subprocess
from pathlib import Path

import httpx2
from django.core.management import get_commands

from migrations_app.sandbox import SandboxServer
from migrations_app.sandbox.state import FaultConfig

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
VENV_PYTHON = ".venv/bin/python"
# What a shell on a fresh clone has: none of the console's variables leak in from the tests.
BASE_ENV = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}


def section(title: str) -> str:
    """The README's text from `title` to the next heading of any level."""
    start = README.index(title)
    following = re.search(r"\n#{2,3} ", README[start + len(title) :])
    return README[start : start + len(title) + following.start()] if following else README[start:]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


# Deployment files the README gives (a systemd unit, a container): they name the interpreter
# where it is installed there, not in the clone.
DEPLOYMENT_BLOCKS = re.compile(r"```(?:ini|dockerfile)\n.*?```", flags=re.S)


def test_every_python_that_runs_manage_py_is_the_virtualenvs():
    local = DEPLOYMENT_BLOCKS.sub("", README)
    interpreters = re.findall(r"([^\s(`]*python\S*)\s+manage\.py", local)
    assert interpreters, "the README runs no manage.py command"
    assert set(interpreters) == {VENV_PYTHON}, sorted(set(interpreters))
    for block in shell_blocks(README):
        for line in block.splitlines():
            if "manage.py" in line:
                assert line.startswith(f"{VENV_PYTHON} manage.py "), line


def test_every_command_the_readme_names_exists():
    named = set(re.findall(r"manage\.py (\w+)", README))
    assert {"import_threads", "run_sandbox", "create_staff_user", "qcluster"} <= named
    assert not named - set(get_commands()), sorted(named - set(get_commands()))


def test_the_local_commands_run_as_written_on_a_fresh_database(tmp_path):
    """The block under "Any other command", line by line, in a shell that has only what it
    exports; on a fresh SQLite database (migrated first, as `make demo` leaves it), in a folder
    holding the id file it names. `make venv` built the interpreter the suite runs in."""
    block = shell_blocks(section("**Any other command**"))[0]
    env = {**BASE_ENV, "SQLITE_PATH": str(tmp_path / "db.sqlite3")}
    (tmp_path / "thread_ids.csv").write_text("thread_id\nthread_ReadmeExample00000000001\n")
    python, manage = str(ROOT / VENV_PYTHON), str(ROOT / "manage.py")

    def run(words: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(words, cwd=tmp_path, env=env, capture_output=True, text=True)

    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            name, value = words[1].split("=", 1)
            env[name] = value
        elif words[:2] == [VENV_PYTHON, "manage.py"]:
            commands.append(words[2:])
        else:
            assert words[:2] == ["make", "venv"], line
    assert env.get("DEBUG") == "true"
    assert run([python, manage, "migrate", "--verbosity", "0"]).returncode == 0
    for arguments in commands:
        done = run([python, manage, *arguments])
        assert done.returncode == 0, (arguments, done.stdout, done.stderr)
    assert "thread_ReadmeExample00000000001" in (tmp_path / "mapping.csv").read_text()


def test_without_debug_or_a_secret_key_a_command_says_what_it_needs(tmp_path):
    done = subprocess.run(
        [str(ROOT / VENV_PYTHON), "manage.py", "check"],
        cwd=ROOT,
        env={**BASE_ENV, "SQLITE_PATH": str(tmp_path / "db.sqlite3")},
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "SECRET_KEY is required" in done.stderr and "DEBUG=true" in done.stderr


def test_the_fault_settings_the_rehearsal_section_posts_are_the_sandboxs():
    text = section("## Rehearsing failures")
    documented = set(re.findall(r"^\| `(\w+)`", text, flags=re.M))
    documented |= set(re.findall(r"^\| `\w+`, `(\w+)`", text, flags=re.M))
    documented |= set(re.findall(r"^\| `\w+` \(0–1\), `(\w+)`", text, flags=re.M))
    fields = {field.name for field in dataclasses.fields(FaultConfig)}
    assert documented and documented <= fields, sorted(documented - fields)
    posts = [
        shlex.split(line)
        for block in shell_blocks(text)
        for line in block.splitlines()
        if line.startswith("curl") and "-d" in line
    ]
    assert len(posts) >= 4
    with SandboxServer() as sandbox:
        base = sandbox.url.removesuffix("/v1")
        for words in posts:
            url = words[words.index("-X") + 2].replace("http://127.0.0.1:8001", base)
            answer = httpx2.post(url, content=words[words.index("-d") + 1])
            assert answer.status_code == 200, (words, answer.text)
        assert sandbox.state.faults == FaultConfig(), "the last call puts everything back"

"""tests/postgres.py finds PostgreSQL's server binaries where Debian puts them, and installs them
with apt-get when they are missing (what `make test` relies on). No apt-get runs here: the commands
are recorded, and the package is simulated by creating the binaries where it would."""

from pathlib import Path

import pytest

from tests import postgres


def fake_binaries(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in postgres.SERVER_BINARIES:
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return folder


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine without PostgreSQL: empty PATH, empty Debian library, no createcluster.conf."""
    (tmp_path / "path").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "path"))
    monkeypatch.setattr(postgres, "LIBRARY", tmp_path / "usr-lib-postgresql")
    monkeypatch.setattr(postgres, "CREATECLUSTER_CONF", tmp_path / "etc" / "createcluster.conf")
    monkeypatch.setattr(postgres, "LOCAL_BIN", tmp_path / "usr-local-bin")
    return tmp_path


def with_apt_get(machine: Path) -> None:
    apt_get = machine / "path" / "apt-get"
    apt_get.write_text("#!/bin/sh\nexit 99\n")  # never run: the test records the commands
    apt_get.chmod(0o755)


def test_the_newest_debian_version_is_found_when_the_binaries_are_not_on_path(machine: Path):
    fake_binaries(machine / "usr-lib-postgresql" / "9.6" / "bin")
    fake_binaries(machine / "usr-lib-postgresql" / "15" / "bin")
    fake_binaries(machine / "usr-lib-postgresql" / "17" / "bin")
    assert postgres.locate("initdb") == str(machine / "usr-lib-postgresql/17/bin/initdb")


def test_binaries_on_path_win_over_the_debian_folders(machine: Path):
    fake_binaries(machine / "usr-lib-postgresql" / "17" / "bin")
    fake_binaries(machine / "path")
    assert postgres.locate("pg_ctl") == str(machine / "path" / "pg_ctl")


def test_nothing_is_installed_when_the_binaries_are_there(machine: Path):
    fake_binaries(machine / "usr-lib-postgresql" / "15" / "bin")
    commands = []
    assert postgres.ensure_installed(run=lambda args, **_: commands.append(args)) == 0
    assert commands == []


def test_missing_binaries_are_installed_from_debian_without_a_main_cluster(machine: Path):
    with_apt_get(machine)
    commands = []

    def apt_get(args: list[str], **kwargs: object) -> None:
        commands.append(args)
        assert kwargs["env"]["DEBIAN_FRONTEND"] == "noninteractive"
        if args[-1] == "postgresql":  # what the package does: binaries under /usr/lib/postgresql
            assert "create_main_cluster = false" in postgres.CREATECLUSTER_CONF.read_text()
            fake_binaries(machine / "usr-lib-postgresql" / "15" / "bin")

    assert postgres.ensure_installed(run=apt_get) == 0
    assert [c[:2] + c[-1:] for c in commands] == [
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "postgresql-common"],
        ["apt-get", "install", "postgresql"],
    ]
    assert postgres.find_binary("initdb") == str(machine / "usr-lib-postgresql/15/bin/initdb")


def test_an_install_that_leaves_them_missing_says_so(machine: Path):
    with_apt_get(machine)
    with pytest.raises(SystemExit, match="still missing after apt-get: initdb, pg_ctl, postgres"):
        postgres.ensure_installed(run=lambda args, **_: None)


def test_without_apt_get_the_message_says_what_to_install(machine: Path):
    with pytest.raises(SystemExit, match="no apt-get to install them: install PostgreSQL 15"):
        postgres.ensure_installed(run=lambda args, **_: None)


def test_a_missing_binary_names_the_make_target_that_installs_it(machine: Path):
    with pytest.raises(SystemExit, match="initdb not found; run `make postgres`"):
        postgres.find_binary("initdb")


def test_an_administrators_main_cluster_choice_is_left_alone(machine: Path):
    conf = postgres.CREATECLUSTER_CONF
    conf.parent.mkdir(parents=True)
    conf.write_text("create_main_cluster = true\n")
    postgres.disable_main_cluster(conf)
    assert conf.read_text() == "create_main_cluster = true\n"


def test_debians_commented_default_gets_an_explicit_false(machine: Path):
    conf = postgres.CREATECLUSTER_CONF
    conf.parent.mkdir(parents=True)
    conf.write_text("#create_main_cluster = true\n")
    postgres.disable_main_cluster(conf)
    assert conf.read_text().splitlines() == [
        "#create_main_cluster = true",
        "create_main_cluster = false",
    ]

"""``trainforge admin`` (issue 17): help everywhere, list-teams, set-quota, create-key
--expires-in, header rows, and an error for a team that exists. In-process, on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from api.db.session import session_factory
from api.settings import Settings, get_settings
from api.teams.repository import authenticate
from tests.operator.cli_parse import help_text, parse
from trainforge.entry import main

COMMANDS = ["create-team", "list-teams", "set-quota", "create-key", "list-keys", "revoke-key"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[Settings]:
    monkeypatch.setenv("TRAINFORGE_HOME", str(settings.home))
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    code = main(["admin", *argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_every_admin_subcommand_has_help() -> None:
    listing = help_text(["admin"])
    for name in COMMANDS:
        assert name in listing
        text = help_text(["admin", name])
        assert f"Usage: trainforge admin {name}" in text
        described = text.split("Usage:")[1].splitlines()[2].strip()
        assert len(described) > 20, (name, text)  # a description


def test_teams_quotas_and_keys(home: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "create-team", "vision", "--max-running-jobs", "2")
    assert code == 0 and len(out) == 1
    code, _, err = run(capsys, "create-team", "vision")
    assert code == 2 and "a team named 'vision' exists" in err
    code, out, _ = run(capsys, "set-quota", "vision", "--max-storage-bytes", "50GiB",
                       "--max-queued-jobs", "none")  # fmt: skip
    assert code == 0
    code, out, _ = run(capsys, "list-teams")
    assert out[0].split("\t") == ["ID", "NAME", "MAX_RUNNING", "MAX_QUEUED",
                                  "MAX_STORAGE_BYTES", "STORED_BYTES"]  # fmt: skip
    vision = next(line.split("\t") for line in out[1:] if "\tvision\t" in line)
    assert vision[2:] == ["2", "-", str(50 * 2**30), "0"]
    code, _, err = run(capsys, "set-quota", "vision", "--max-storage-bytes", "lots")
    assert code == 2 and "--max-storage-bytes 'lots'" in err
    code, _, err = run(capsys, "set-quota", "vision", "--max-running-jobs", "0")
    assert code == 2 and "between 1 and 10,000" in err
    code, _, err = run(capsys, "set-quota", "nobody", "--max-running-jobs", "1")
    assert code == 2 and "no team 'nobody'" in err

    code, out, _ = run(capsys, "create-key", "--team", "vision", "--name", "ci",
                       "--expires-in", "30d")  # fmt: skip
    assert code == 0 and len(out) == 1
    with session_factory(home.resolved_database_url)() as s:
        principal = authenticate(s, out[0])
        assert principal is not None and principal.role == "member"
    code, _, err = run(capsys, "create-key", "--team", "vision", "--expires-in", "soon")
    assert code == 2 and "--expires-in 'soon'" in err
    code, out, _ = run(capsys, "list-keys")
    assert out[0].split("\t") == ["ID", "TEAM", "ROLE", "STATE", "NAME", "CREATED", "EXPIRES"]
    ci = next(line.split("\t") for line in out[1:] if "\tci\t" in line)
    assert ci[1:5] == ["vision", "member", "active", "ci"] and ci[6] != "-"
    code, _, err = run(capsys, "revoke-key", "nope")
    assert code == 2 and "no key 'nope'" in err
    assert run(capsys, "revoke-key", ci[0])[0] == 0
    assert "\trevoked\t" in next(line for line in run(capsys, "list-keys")[1] if "\tci\t" in line)


def test_every_admin_command_in_the_readme_parses() -> None:
    import re
    import shlex

    from tests.conftest import REPO

    found = 0
    for line in (REPO / "README.md").read_text().splitlines():
        match = re.search(r"trainforge (admin [^`)#]*)", line)
        if not match or "trainforge admin`" in line:
            continue
        argv = shlex.split(match.group(1).replace("<key id>", "abc123"))
        if argv[-1] == "--help":
            continue
        path, _ = parse(argv)
        assert path[0] == "admin" and path[1] in COMMANDS, line
        found += 1
    assert found >= 8

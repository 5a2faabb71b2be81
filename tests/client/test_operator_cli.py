"""The operator verbs are on the user verbs' typer app (one help, one style); `admin` on a
database it cannot open says so in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e


def trainforge(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    return subprocess.run([sys.executable, "-m", "trainforge", *args], cwd=REPO,
                          env={**clean, **env}, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_admin_on_an_unopenable_database_is_one_line_naming_it(tmp_path: Path) -> None:
    home = tmp_path / "missing" / "home"
    done = trainforge(["admin", "list-keys"], TRAINFORGE_HOME=str(home))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(home / "trainforge.db") in lines[0]
    assert "TRAINFORGE_HOME" in lines[0] and "TRAINFORGE_DATABASE_URL" in lines[0]
    url = "postgresql+psycopg://someone:secret@127.0.0.1:1/nowhere"
    done = trainforge(["admin", "list-keys"], TRAINFORGE_DATABASE_URL=url)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "secret" not in done.stderr and "127.0.0.1:1/nowhere" in done.stderr


def test_operator_and_user_verbs_are_one_typer_app() -> None:
    up = trainforge(["up", "--help"])
    assert up.returncode == 0 and "Usage: trainforge up" in up.stdout and "--port" in up.stdout
    wrong = trainforge(["worker", "--no-such-flag"])
    assert wrong.returncode == 2 and "No such option: --no-such-flag" in wrong.stderr
    user = trainforge(["--help"])
    assert user.returncode == 0 and "submit" in user.stdout and "Operator commands" in user.stdout
    for verb in ("up", "api", "worker", "db", "admin"):
        assert f"│ {verb} " in user.stdout, verb  # listed in the one help, one style
    bad = trainforge(["api", "--processes", "0"])
    assert bad.returncode == 2 and "--processes" in bad.stderr

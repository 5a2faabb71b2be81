"""An operator verb with a bad TRAINFORGE_* variable or option: a message naming it and
exit 2, never a traceback (the processes run as an operator starts them)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.cli_helpers import run_cli

pytestmark = pytest.mark.e2e


def _trainforge(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    return run_cli(list(argv), clean | {"TRAINFORGE_HOME": str(tmp_path), **env}, timeout=120)


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        (["api"], {"TRAINFORGE_API_PROCESSES": "0"}, "TRAINFORGE_API_PROCESSES='0'"),
        (["worker"], {"TRAINFORGE_LEASE_SECONDS": "soon"}, "TRAINFORGE_LEASE_SECONDS='soon'"),
        (["db", "upgrade"], {"TRAINFORGE_API_PROCESSES": "-3"}, "greater than or equal to 1"),
        (["api", "--processes", "65"], {}, "65 is not in the range 1<=x<=64"),
    ],
)
def test_a_bad_setting_is_a_message(
    tmp_path: Path, argv: list[str], env: dict[str, str], says: str
) -> None:
    done = _trainforge(tmp_path, *argv, **env)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr + done.stdout

"""docs/python.md runs as written: its ```python blocks, in order, in one Python process
(as a notebook would), against a real `trainforge up`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.procs import trainforge_up

pytestmark = pytest.mark.e2e


def python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)


def test_the_python_walkthrough_runs_against_a_real_server(tmp_path: Path) -> None:
    blocks = python_blocks(REPO / "docs" / "python.md")
    assert len(blocks) >= 6
    script = tmp_path / "walkthrough.py"
    script.write_text("\n".join(blocks))
    work = tmp_path / "work"
    (work / "examples").mkdir(parents=True)
    (work / "examples" / "digits-mlp.yaml").write_bytes(
        (REPO / "examples" / "digits-mlp.yaml").read_bytes()
    )
    with trainforge_up(tmp_path) as up:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
        env |= {"TRAINFORGE_URL": up.base, "TRAINFORGE_API_KEY": up.key,
                "XDG_CONFIG_HOME": str(tmp_path / "xdg")}  # fmt: skip
        done = subprocess.run([sys.executable, str(script)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, (done.stdout, done.stderr[-3000:])
    out = done.stdout
    assert "succeeded completed" in out
    assert re.search(r"status running", out) and "end succeeded completed" in out
    assert "no such job" in out
    assert (work / "iris-model.zip").stat().st_size > 1000
    assert re.search(r"^spec\.epochs -> ", out, re.M)

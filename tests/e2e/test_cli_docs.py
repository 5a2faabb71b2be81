"""The CLI examples of docs/cli.md and the README run as written, against `trainforge up`
(TRAINFORGE_URL and TRAINFORGE_HOME point the unchanged commands at the test server)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.procs import UpServer, trainforge_up

pytestmark = pytest.mark.e2e
MARKER = "<!-- tested by tests/e2e/test_cli_docs.py -->"


def marked_blocks(doc: Path) -> list[str]:
    """The ```bash blocks right after the marker."""
    pattern = re.escape(MARKER) + r"\s*```bash\n(.*?)```"
    return re.findall(pattern, doc.read_text(), re.S)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpServer]:
    with trainforge_up(tmp_path_factory.mktemp("docs")) as server:
        yield server


def run_bash(script: str, up: UpServer, cwd: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    bin_dir = str(Path(sys.executable).parent)  # the venv, as `source .venv/bin/activate`
    env |= {"PATH": f"{bin_dir}:{env.get('PATH', '')}", "TRAINFORGE_URL": up.base,
            "TRAINFORGE_HOME": str(up.home), "XDG_CONFIG_HOME": str(tmp / "xdg")}  # fmt: skip
    script = script.replace("source .venv/bin/activate", ": venv already on PATH")
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def test_the_cli_md_example_runs_as_written(up: UpServer, tmp_path: Path) -> None:
    (block,) = marked_blocks(REPO / "docs" / "cli.md")
    done = run_bash(block, up, tmp_path, tmp_path)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert re.search(r"job \w+ succeeded \(completed\) after 5 epochs", done.stdout)
    assert (tmp_path / "digits-best.safetensors").stat().st_size > 0
    assert done.stdout.count("\nstep,epoch,val_accuracy\n") == 1


def test_the_readme_first_job_runs_as_written(up: UpServer, tmp_path: Path) -> None:
    blocks = marked_blocks(REPO / "README.md")
    assert blocks, "README has no tested CLI block"
    for block in blocks:
        done = run_bash(block, up, REPO, tmp_path)
        assert done.returncode == 0, (block, done.stdout, done.stderr)

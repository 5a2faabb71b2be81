"""Running the user CLI as a user does: a subprocess, or a pseudo-terminal (pexpect)."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pexpect

from tests.conftest import REPO
from tests.procs import UpServer

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\x1b[=>78]")


def cli_env(up: UpServer | None, tmp: Path, **extra: str) -> dict[str, str]:
    """No key in the environment: the CLI finds $TRAINFORGE_HOME/api-key by itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    env.update({"XDG_CONFIG_HOME": str(tmp / "xdg"), "HOME": str(tmp), "TERM": "xterm-256color"})
    if up is not None:
        env.update({"TRAINFORGE_URL": up.base, "TRAINFORGE_HOME": str(up.home)})
    env.update(extra)
    return env


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainforge", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn_cli(args: list[str], env: dict[str, str], timeout: float = 300) -> pexpect.spawn:
    """The CLI in a real pseudo-terminal (stdout is a TTY: the live view)."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "trainforge", *args],
        env=env,
        cwd=str(REPO),
        # Ctrl-C as in a user's shell: an ignored SIGINT is inherited through exec, and a
        # test process may ignore it (pytest-xdist workers did after some tests): Python
        # then never raises KeyboardInterrupt and the CLI cannot detach.
        preexec_fn=_default_sigint,
        encoding="utf-8",
        codec_errors="replace",
        dimensions=(40, 140),
        timeout=timeout,
    )
    child.logfile_read = io.StringIO()
    return child


def screen_text(child: pexpect.spawn) -> str:
    """Everything the terminal received, control sequences removed; every redraw (after a
    carriage return) starts a new line."""
    log = child.logfile_read
    assert isinstance(log, io.StringIO)
    return ANSI.sub("", log.getvalue().replace("\r", "\n"))

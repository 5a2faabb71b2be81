"""`trainforge follow` survives a restart of the API process: it reconnects with
Last-Event-ID and the epochs it prints have no gap and no duplicate. The API and the
worker run as separate processes (`trainforge api`, `trainforge worker`), so the API
can be restarted while the job trains on."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port
from tests.e2e.cli_helpers import cli_env, run_cli
from tests.procs import stop

pytestmark = pytest.mark.e2e
EPOCHS = 6
SPEC = {
    "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 4},
    "model": {"kind": "mlp", "hidden_units": [64]},
    "epochs": EPOCHS,
}


def operator(args: list[str], env: dict[str, str]) -> str:
    done = run_cli(args, env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "trainforge", *args],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextmanager
def api_process(
    env: dict[str, str], port: int, log: Path, *, crash: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """``crash``: it ends with SIGKILL, so open streams drop at once (a graceful stop
    would let them run on, and the job could end before the restart)."""
    proc = start(["api", "--host", "127.0.0.1", "--port", str(port)], env, log)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        else:
            raise AssertionError(log.read_text()[-3000:])
        yield proc
    finally:
        if crash:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        stop(proc)


def test_follow_reconnects_across_an_api_restart_without_gap_or_duplicate(
    tmp_path: Path,
) -> None:
    home, port = tmp_path / "home", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    env |= {"TRAINFORGE_HOME": str(home), "TRAINFORGE_TORCH_THREADS": "1"}
    operator(["db", "upgrade"], env)
    operator(["admin", "create-team", "default"], env)
    key = operator(["admin", "create-key", "--team", "default"], env)
    user = cli_env(None, tmp_path, TRAINFORGE_URL=f"http://127.0.0.1:{port}",
                   TRAINFORGE_API_KEY=key)  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    worker = start(["worker"], env, tmp_path / "worker.log")
    try:
        with api_process(env, port, tmp_path / "api1.log", crash=True):
            submitted = run_cli(["submit", str(tmp_path / "spec.json"), "--detach", "--json"], user)
            job_id = json.loads(submitted.stdout)["id"]
            errors = (tmp_path / "follow.err").open("w")  # a file: nothing to drain
            follow = subprocess.Popen(
                [sys.executable, "-m", "trainforge", "follow", job_id],
                env=user,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
            assert follow.stdout is not None
            lines: list[str] = []
            while not any(line.startswith("epoch 2/") for line in lines):
                line = follow.stdout.readline()
                assert line, (lines, (tmp_path / "worker.log").read_text()[-3000:])
                lines.append(line)
        # The API is down now (follow keeps retrying); the job trains on in the worker.
        time.sleep(2)
        with api_process(env, port, tmp_path / "api2.log"):
            # Read on through the same text stream: its buffer may already hold the
            # lines after epoch 2 (communicate() would read past them, from the pipe).
            watchdog = threading.Timer(600, follow.kill)
            watchdog.start()
            lines += follow.stdout.readlines()
            follow.wait()
            watchdog.cancel()
            errors.close()
    finally:
        stop(worker)
    err = (tmp_path / "follow.err").read_text()
    assert follow.returncode == 0, (lines, err)
    assert "reconnecting" in err  # it did lose the connection
    printed = [int(m[1]) for line in lines if (m := re.match(rf"epoch (\d+)/{EPOCHS} ", line))]
    assert printed == list(range(1, EPOCHS + 1)), lines
    assert lines[-1].startswith(f"job {job_id} succeeded (completed)")

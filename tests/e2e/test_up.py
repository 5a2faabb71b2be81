"""`trainforge up` as a user runs it: a real server and worker, driven over HTTP."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.e2e


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    base: str
    home: Path
    log: Path

    @property
    def key(self) -> str:
        return (self.home / "api-key").read_text().strip()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    home = tmp_path / "tfhome"
    log = tmp_path / "up.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    env["TRAINFORGE_HOME"] = str(home)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trainforge.cli", "up", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()
        time.sleep(0.3)
    else:
        raise AssertionError(log.read_text())
    yield Server(proc, base, home, log)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_digits_mlp_over_http_reaches_090_in_10_epochs_and_ctrl_c_stops(server: Server) -> None:
    key_file = server.home / "api-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert server.key in server.log.read_text()  # printed once, on first start
    assert httpx.get(f"{server.base}/v1/jobs").status_code == 401

    auth = {"Authorization": f"Bearer {server.key}"}
    spec = {
        "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 32},
        "model": {"kind": "mlp", "hidden_units": [128], "activation": "relu"},
        "optimizer": {"kind": "adam", "lr": 0.001},
        "epochs": 10,
        "seed": 0,
    }
    r = httpx.post(f"{server.base}/v1/jobs", json={"spec": spec}, headers=auth)
    assert r.status_code == 201, r.text
    job_url = server.base + r.headers["location"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job = httpx.get(job_url, headers=auth).json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.5)
    assert job["status"] == "succeeded", (job, server.log.read_text()[-3000:])
    assert job["progress"]["epoch"] == 10
    metrics = httpx.get(f"{job_url}/metrics", params={"name": "val_accuracy"}, headers=auth).json()
    points = metrics["series"][0]["points"]
    assert [p["epoch"] for p in points] == list(range(10))
    assert points[-1]["value"] >= 0.90

    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=30) == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.base}/healthz", timeout=1)

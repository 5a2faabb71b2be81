"""`trainforge up` as a user runs it: a real server and worker, driven over HTTP."""

from __future__ import annotations

import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.procs import UpServer, trainforge_up

pytestmark = pytest.mark.e2e


Server = UpServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[UpServer]:
    with trainforge_up(tmp_path) as up:
        yield up


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

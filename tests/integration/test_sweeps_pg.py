"""A sweep on the real PostgreSQL + Redis with 2 real worker processes: exactly
max_trials trials, some pruned, the reported best equal to the best among trials;
a worker SIGKILLed mid-sweep changes none of that; the same seed gives the same
trial parameters."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.db.migrate import upgrade
from api.db.session import session_factory
from api.queue import CeleryJobQueue
from api.settings import Settings
from api.sweeps import sampling
from api.sweeps.schemas import SweepCreate
from api.teams.repository import create_api_key, get_or_create_team
from tests.procs import start_worker, stop

pytestmark = pytest.mark.integration

SWEEP: dict[str, Any] = {
    "name": "asha-digits",
    "spec": {
        "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 16},
        "model": {"kind": "mlp", "hidden_units": [64]},
        "optimizer": {"kind": "sgd", "momentum": 0.9},
        "epochs": 6,
        "seed": 5,
    },
    "parameters": {
        "optimizer.lr": {"kind": "log_uniform", "low": 1e-5, "high": 0.3},
        "regularization.dropout": {"kind": "uniform", "low": 0.0, "high": 0.5},
    },
    "algorithm": {"kind": "random", "seed": 11},
    "objective": {"metric": "val_accuracy", "mode": "max"},
    "max_trials": 8,
    "max_concurrent_trials": 2,
    "early_termination": {"kind": "asha", "grace_epochs": 1, "reduction_factor": 2},
    # One trial per worker (tests/faults/test_pack_faults.py kills a worker mid-pack).
    "execution": {"pack": "off"},
}


@pytest.fixture
def pg_settings(pg_url: str, redis_url: str, tmp_path: Path) -> Settings:
    upgrade(pg_url)
    return Settings(
        home=tmp_path,
        database_url=pg_url,
        broker_url=redis_url,
        queue=f"tf-sweep-{secrets.token_hex(4)}",
        heartbeat_seconds=0.5,
        lease_seconds=4.0,
        reconcile_seconds=1.0,
        republish_after_seconds=3.0,
    )


@pytest.fixture
def workers(pg_settings: Settings, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [start_worker(pg_settings, tmp_path, f"worker-{i}") for i in range(2)]
    yield procs
    for proc in procs:
        stop(proc)


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and anything it started
    proc.wait()


def logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-4000:] for p in tmp_path.glob("worker-*.log"))


def unfinished_job(log: Path) -> str | None:
    """The job a worker's log shows started and never ended: the one it died with."""
    started = re.findall(r"job ([0-9a-f]+): attempt (\d+) started on worker", log.read_text())
    ended = set(
        re.findall(r"job ([0-9a-f]+) attempt (\d+) (?:succeeded|failed|canceled)", log.read_text())
    )
    left = [job for job, attempt in started if (job, attempt) not in ended]
    return left[-1] if left else None


def test_a_random_asha_sweep_survives_a_killed_worker(
    pg_settings: Settings, workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    with session_factory(pg_settings.resolved_database_url)() as s:
        team = get_or_create_team(s, f"team-{secrets.token_hex(3)}")
        _, key = create_api_key(s, team, "member")
        s.commit()
    app = create_app(pg_settings, queue=CeleryJobQueue(pg_settings))
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
        r = client.post("/v1/sweeps", json=SWEEP)
        assert r.status_code == 201, r.text
        sweep_id = r.json()["id"]

        # Kill one worker while it trains a trial (mid-epoch or between epochs), once
        # the sweep has moved past its first trials; a replacement joins. Two trials
        # running means both workers are busy (one job at a time each).
        killed, deadline = False, time.monotonic() + 600
        sweep: dict[str, Any] = {}
        while time.monotonic() < deadline:
            sweep = client.get(f"/v1/sweeps/{sweep_id}").json()
            running = sum(c["count"] for c in sweep["counts"] if c["status"] == "running")
            assert running <= 2  # max_concurrent_trials
            if sweep["status"] != "running":
                break
            if not killed and sweep["trials_ended"] >= 2 and running == 2:
                sigkill(workers[0])
                killed = True
                workers.append(start_worker(pg_settings, tmp_path, "worker-2"))
            time.sleep(0.3)
        assert killed, "the sweep ended before a worker could be killed"
        assert sweep["status"] == "succeeded", (sweep, logs(tmp_path))

        # Exactly max_trials trials, numbered 0..7, none duplicated, all ended.
        board = client.get(f"/v1/sweeps/{sweep_id}/trials").json()["items"]
        assert sorted(t["trial_number"] for t in board) == list(range(8))
        assert sweep["trials_created"] == sweep["trials_ended"] == 8
        jobs = client.get("/v1/jobs", params={"sweep_id": sweep_id, "limit": 100}).json()
        assert len(jobs["items"]) == 8
        reasons = [t["status_reason"] for t in board]
        assert "pruned" in reasons, reasons
        assert {t["status"] for t in board} == {"succeeded"}, board
        # A pruned trial trained: its model was exported like any finished job's.
        pruned = next(t for t in board if t["status_reason"] == "pruned")
        onnx = client.get(f"/v1/jobs/{pruned['job_id']}/model", params={"format": "onnx"})
        assert onnx.status_code == 200, onnx.text
        assert hashlib.sha256(onnx.content).hexdigest() == onnx.headers["x-checksum-sha256"]
        # The killed worker's trial was taken over (worker_lost, then resumed).
        # (GET /v1/jobs lists summaries: the transitions are on each job itself)
        full = [client.get(f"/v1/jobs/{j['id']}").json() for j in jobs["items"]]
        lost = {
            j["id"] for j in full if any(t["reason"] == "worker_lost" for t in j["transitions"])
        }
        killed_job = unfinished_job(tmp_path / "worker-0.log")
        assert lost, [j["transitions"] for j in full]
        if killed_job is not None:  # (None: killed between its claim and its first line)
            assert killed_job in lost, (killed_job, [j["transitions"] for j in full])
        # A loaded host may also let a live worker's lease lapse (4 s here): that trial is
        # taken over as well, and its worker, fenced off, leaves it (the trials above
        # still ended once each, with the metrics of one owner).

        # The reported best is the best objective among the trials, as their metrics show.
        best = max(t["objective"] for t in board)
        assert sweep["best"]["objective"] == best
        points = client.get(
            f"/v1/jobs/{sweep['best']['job_id']}/metrics", params={"name": "val_accuracy"}
        ).json()["series"][0]["points"]
        assert max(p["value"] for p in points) == best
        assert sweep["epochs_trained"] == sum(t["epochs"] for t in board) < 8 * 6

        # Same seed, same parameters: each trial's are what the seed alone gives.
        body = SweepCreate.model_validate(SWEEP)
        for t in board:
            expected = sampling.next_params(
                body.algorithm, body.parameters, "max", [], t["trial_number"], 8
            )
            assert t["params"] == expected

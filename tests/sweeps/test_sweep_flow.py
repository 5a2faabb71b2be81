"""A sweep end to end in-process on SQLite: trials are jobs, run by the worker's own code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.db.session import session_factory
from api.ledger.models import Job
from api.settings import Settings
from api.teams.repository import create_api_key, get_or_create_team
from tests.conftest import FakeQueue
from worker.reconciler import reconcile_once
from worker.runner import run_job

SPEC: dict[str, Any] = {
    "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 64},
    "model": {"kind": "mlp", "hidden_units": [32]},
    "optimizer": {"kind": "sgd"},
    "epochs": 4,
    "seed": 3,
}
SWEEP: dict[str, Any] = {
    "name": "lr",
    "spec": SPEC,
    "parameters": {
        "optimizer.lr": {"kind": "log_uniform", "low": 1e-4, "high": 0.5},
        "model.hidden_units": {"kind": "choice", "values": [[16], [64, 32]]},
    },
    "algorithm": {"kind": "random", "seed": 7},
    "objective": {"metric": "val_accuracy"},
    "max_trials": 6,
    "max_concurrent_trials": 2,
    "early_termination": {"kind": "asha", "grace_epochs": 1, "reduction_factor": 2},
    # One trial per worker at a time, max_concurrent_trials live (tests/sweeps/test_packs.py
    # covers packing, the default).
    "execution": {"pack": "off"},
}


def queued_trials(settings: Settings, sweep_id: str) -> list[str]:
    with session_factory(settings.resolved_database_url)() as s:
        stmt = select(Job.id).where(Job.sweep_id == sweep_id, Job.status == "queued")
        return list(s.scalars(stmt.order_by(Job.trial_number)))


def run_sweep(settings: Settings, sweep_id: str) -> None:
    for _ in range(50):
        queued = queued_trials(settings, sweep_id)
        if not queued:
            return
        run_job(queued[0], settings)
    raise AssertionError("the sweep never ran out of trials")


@pytest.mark.slow  # trains several trials: over a second
def test_a_random_sweep_with_asha_runs_its_trials_as_jobs(
    client: TestClient, settings: Settings, fake_queue: FakeQueue
) -> None:
    r = client.post("/v1/sweeps", json=SWEEP)
    assert r.status_code == 201, r.text
    sweep = r.json()
    assert sweep["objective"] == {"metric": "val_accuracy", "mode": "max"}
    assert sweep["trials_created"] == 2 and len(fake_queue.published) == 2
    run_sweep(settings, sweep["id"])

    sweep = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert (sweep["status"], sweep["status_reason"]) == ("succeeded", "completed")
    assert sweep["trials_created"] == sweep["trials_ended"] == 6
    assert sum(c["count"] for c in sweep["counts"]) == 6
    reasons = {c["status_reason"]: c["count"] for c in sweep["counts"]}
    assert reasons.get("pruned", 0) >= 1, sweep["counts"]
    board = client.get(f"/v1/sweeps/{sweep['id']}/trials").json()["items"]
    assert sorted(t["trial_number"] for t in board) == list(range(6))
    objectives = [t["objective"] for t in board if t["status"] == "succeeded"]
    assert objectives == sorted(objectives, reverse=True)  # best first (max)
    assert sweep["best"]["objective"] == max(objectives)
    assert sweep["epochs_trained"] == sum(t["epochs"] for t in board)
    assert sweep["epochs_trained"] < 6 * 4  # pruned trials stopped early

    # The best trial's objective is its best epoch's metric, as the metrics API shows it.
    best = sweep["best"]
    series = client.get(f"/v1/jobs/{best['job_id']}/metrics", params={"name": "val_accuracy"})
    values = [p["value"] for p in series.json()["series"][0]["points"]]
    assert best["objective"] == max(values)

    # Trials are jobs: their sweep, number and params, and a filter for them.
    pruned = next(t for t in board if t["status_reason"] == "pruned")
    job = client.get(f"/v1/jobs/{pruned['job_id']}").json()
    assert (job["status"], job["status_reason"]) == ("succeeded", "pruned")
    assert job["sweep_id"] == sweep["id"] and job["params"] == pruned["params"]
    assert job["spec"]["optimizer"]["lr"] == pruned["params"]["optimizer.lr"]
    assert job["progress"]["epoch"] < 4
    assert client.get(f"/v1/jobs/{pruned['job_id']}/checkpoints").json()["items"]
    listed = client.get("/v1/jobs", params={"sweep_id": sweep["id"], "limit": 100}).json()
    assert {j["id"] for j in listed["items"]} == {t["job_id"] for t in board}

    # A reconciler pass afterwards adds nothing.
    reconcile_once(settings, fake_queue)
    assert client.get(f"/v1/sweeps/{sweep['id']}").json()["trials_created"] == 6

    # The event stream: every trial created and ended, the bests, the end.
    with client.stream("GET", f"/v1/sweeps/{sweep['id']}/events") as stream:
        kinds = [line.removeprefix("event: ") for line in stream.iter_lines()
                 if line.startswith("event: ")]  # fmt: skip
    assert kinds.count("trial_created") == 6 and kinds.count("trial_ended") == 6
    assert kinds.count("new_best") >= 1 and kinds[-2:] == ["sweep_ended", "end"]

    # Same seed, same parameters (trial by trial).
    again = client.post("/v1/sweeps", json=SWEEP | {"name": "again"}).json()
    first = {t["trial_number"]: t["params"] for t in board}
    second = client.get(f"/v1/sweeps/{again['id']}/trials").json()["items"]
    assert second and all(t["params"] == first[t["trial_number"]] for t in second)


def test_cancel_ends_the_sweep_and_its_queued_trials(client: TestClient) -> None:
    sweep = client.post("/v1/sweeps", json=SWEEP).json()
    r = client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["status_reason"]) == ("canceled", "canceled_by_user")
    board = client.get(f"/v1/sweeps/{sweep['id']}/trials").json()["items"]
    assert [(t["status"], t["status_reason"]) for t in board] == [
        ("canceled", "canceled_by_user")
    ] * 2
    assert client.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 409


def test_a_grid_sweep_runs_every_point_once(client: TestClient, settings: Settings) -> None:
    body = SWEEP | {
        "parameters": {
            "optimizer.lr": {"kind": "grid", "values": [0.05, 0.2]},
            "model.hidden_units": {"kind": "grid", "values": [[16], [32]]},
        },
        "algorithm": {"kind": "grid"},
        "max_trials": None,
        "early_termination": {"kind": "none"},
        "max_concurrent_trials": 3,
        "spec": SPEC | {"epochs": 1},
    }
    sweep = client.post("/v1/sweeps", json=body).json()
    assert sweep["max_trials"] == 4
    run_sweep(settings, sweep["id"])
    sweep = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert (sweep["status"], sweep["status_reason"]) == ("succeeded", "grid_exhausted")
    board = client.get(f"/v1/sweeps/{sweep['id']}/trials").json()["items"]
    points = sorted(json.dumps(t["params"], sort_keys=True) for t in board)
    assert len(set(points)) == 4


def test_another_teams_sweep_is_a_404(client: TestClient, settings: Settings) -> None:
    sweep = client.post("/v1/sweeps", json=SWEEP).json()
    with session_factory(settings.resolved_database_url)() as s:
        team = get_or_create_team(s, "other")
        _, raw = create_api_key(s, team, "member")
        s.commit()
    other = {"Authorization": f"Bearer {raw}"}
    for path in ("", "/trials", "/events"):
        assert client.get(f"/v1/sweeps/{sweep['id']}{path}", headers=other).status_code == 404
    assert client.post(f"/v1/sweeps/{sweep['id']}/cancel", headers=other).status_code == 404
    assert client.get("/v1/sweeps", headers=other).json()["items"] == []

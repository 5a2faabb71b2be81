"""spec.warm_start end to end: the API checks the source (404 for no such job of the
team, 422s for a running source or a missing checkpoint), the worker loads the source
checkpoint and freezes layers bit-identically, and the job's log says what loaded."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from safetensors.torch import load as st_load

from api.checkpoints.repository import Retention, apply_retention
from api.db.session import session_factory
from api.settings import Settings
from worker.runner import run_job

IRIS = {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 16}
MLP = {"kind": "mlp", "hidden_units": [8]}


def run(client: TestClient, settings: Settings, spec: dict[str, Any]) -> str:
    r = client.post("/v1/jobs", json={"spec": spec})
    assert r.status_code == 201, r.text
    ended = run_job(r.json()["id"], settings)
    job = client.get(f"/v1/jobs/{r.json()['id']}").json()
    assert job["status"] == "succeeded", (ended, job)
    return str(job["id"])


def weights(client: TestClient, job_id: str, which: str) -> dict[str, Any]:
    r = client.get(f"/v1/jobs/{job_id}/checkpoints/{which}/download")
    assert r.status_code == 200, r.text
    return st_load(r.content)


def test_a_fine_tuned_job_loads_its_source_and_keeps_frozen_layers_bit_identical(
    client: TestClient, settings: Settings
) -> None:
    source = run(client, settings, {"dataset": IRIS, "model": MLP, "epochs": 3})
    warm = {"job_id": source, "checkpoint": "best", "freeze": ["1"]}
    tuned = run(client, settings, {"dataset": IRIS, "model": MLP, "epochs": 2,
                                   "warm_start": warm, "seed": 3})  # fmt: skip
    before, after = weights(client, source, "best"), weights(client, tuned, "latest")
    assert all(after[n].equal(before[n]) for n in ("1.weight", "1.bias"))
    assert not after["3.weight"].equal(before["3.weight"])  # the head trained on
    lines = [x["message"] for x in client.get(f"/v1/jobs/{tuned}/logs").json()["items"]]
    assert any(m.startswith("warm start: 4 tensor(s) loaded") and "2 parameter(s) frozen" in m
               for m in lines), lines  # fmt: skip
    # The fine-tuned model is exported like any other (ONNX, served for predictions).
    assert client.get(f"/v1/jobs/{tuned}/model?format=onnx").status_code == 200


def test_the_source_is_checked_before_the_job_is_queued(
    client: TestClient, settings: Settings
) -> None:
    def submit(warm: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        spec = {"dataset": IRIS, "model": MLP, "warm_start": warm}
        return client.post("/v1/jobs", json={"spec": spec}, headers=headers)

    # Run first: a worker runs the oldest queued job of its queue, whichever rang.
    done = run(client, settings, {"dataset": IRIS, "model": MLP, "epochs": 1})
    r = submit({"job_id": "nope"})
    assert r.status_code == 404 and r.json()["errors"][0]["loc"] == "spec.warm_start.job_id"
    queued = client.post("/v1/jobs", json={"spec": {"dataset": IRIS}}).json()["id"]
    r = submit({"job_id": queued})
    assert r.status_code == 422
    assert {e["loc"]: e["type"] for e in r.json()["errors"]} == {
        "spec.warm_start.job_id": "warm_start_source"
    }
    r = submit({"job_id": done, "checkpoint": 987654})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "spec.warm_start.checkpoint"
    r = submit({"job_id": done, "optimizer_state": True, "freeze": ["1"]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == "spec.warm_start.optimizer_state"
    # Another team's finished job is a 404, exactly like no job at all.
    client.post("/v1/admin/teams", json={"name": "other"})
    key = client.post("/v1/admin/keys", json={"team": "other"}).json()["key"]
    r = submit({"job_id": done}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 404 and r.json()["errors"][0]["loc"] == "spec.warm_start.job_id"
    assert submit({"job_id": done}).status_code == 201


def test_a_waiting_dependent_pins_its_source_against_deletion_and_retention(
    client: TestClient, settings: Settings
) -> None:
    source = run(client, settings, {"dataset": IRIS, "model": MLP, "epochs": 2,
                                    "checkpointing": {"keep_last": 2, "keep_best": 0}})  # fmt: skip
    ids = [c["id"] for c in client.get(f"/v1/jobs/{source}/checkpoints").json()["items"]]
    assert len(ids) == 2
    spec = {"dataset": IRIS, "model": MLP, "warm_start": {"job_id": source, "checkpoint": ids[0]}}
    dependent = client.post("/v1/jobs", json={"spec": spec}).json()["id"]  # stays queued
    r = client.delete(f"/v1/jobs/{source}")
    assert r.status_code == 409 and dependent in r.json()["detail"]
    retention = Retention(keep_last=1, keep_best=0, monitor="val_loss", mode="min")
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        assert apply_retention(s, source, retention) == []  # the oldest is pinned
        s.commit()
    assert client.post(f"/v1/jobs/{dependent}/cancel").status_code == 200
    with factory() as s:
        assert apply_retention(s, source, retention) == [ids[0]]  # no longer needed
        s.commit()
    assert client.delete(f"/v1/jobs/{source}").status_code == 204


def test_optimizer_state_continues_the_source_run_through_the_worker(
    client: TestClient, settings: Settings
) -> None:
    source = run(client, settings, {"dataset": IRIS, "model": MLP, "epochs": 2})
    warm = {"job_id": source, "checkpoint": "latest", "optimizer_state": True}
    later = run(client, settings, {"dataset": IRIS, "model": MLP, "epochs": 4, "warm_start": warm})
    lines = [x["message"] for x in client.get(f"/v1/jobs/{later}/logs").json()["items"]]
    assert any("continuing the source's run from epoch 3" in m for m in lines), lines
    epochs = [p["epoch"] for s in client.get(f"/v1/jobs/{later}/metrics?name=loss").json()["series"]
              for p in s["points"]]  # fmt: skip
    assert epochs == [2, 3]  # epochs 0 and 1 were the source's

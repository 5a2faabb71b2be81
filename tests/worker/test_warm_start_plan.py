"""The warm start planned before a job is queued (POST /v1/specs/validate, the dry run,
GET /v1/jobs/{id}) is what the worker then loads: same tensors loaded, skipped (and why),
re-initialised and frozen. Its 422s; the source checkpoint pinned by id at submit."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from safetensors.torch import load as st_load

from api.checkpoints.repository import Retention, apply_retention
from api.db.session import session_factory
from api.settings import Settings
from ml.checks import builtin_info
from ml.models import build_model
from ml.spec import JobSpec
from ml.warm_start import WarmStart, apply_warm_start
from worker.runner import run_job

IRIS = {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 16}


def synthetic(features: int, classes: int) -> dict[str, Any]:
    shape = {"n_samples": 60, "n_features": features, "n_classes": classes}
    return {"source": {"kind": "builtin", "name": "synthetic", "synthetic": shape},
            "batch_size": 16}  # fmt: skip


def run(client: TestClient, settings: Settings, spec: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/v1/jobs", json={"spec": spec})
    assert r.status_code == 201, r.text
    run_job(r.json()["id"], settings)
    job: dict[str, Any] = client.get(f"/v1/jobs/{r.json()['id']}").json()
    assert job["status"] == "succeeded", job
    return job


def test_the_validate_answer_is_what_the_job_loads(client: TestClient, settings: Settings) -> None:
    mlp = {"kind": "mlp", "hidden_units": [8, 5]}
    source = run(client, settings, {"dataset": IRIS, "epochs": 1, "model": mlp})["id"]
    # A wider second layer and two classes: the head is re-initialised as a whole.
    warm = {"job_id": source, "checkpoint": "best", "freeze": ["layers.1"]}
    spec = {"dataset": synthetic(4, 2), "model": {"kind": "mlp", "hidden_units": [8, 6]},
            "epochs": 1, "warm_start": warm}  # fmt: skip
    answer = client.post("/v1/specs/validate", json={"spec": spec})
    assert answer.status_code == 200, answer.text
    planned = answer.json()["warm_start"]
    assert planned["planned"] and planned["loaded"] == ["1.weight", "1.bias"]
    assert {s["tensor"]: s["reason"] for s in planned["skipped"]} == {
        "3.weight": "shape_mismatch", "3.bias": "shape_mismatch",
        "5.weight": "head_reinitialised", "5.bias": "head_reinitialised",
    }  # fmt: skip
    assert planned["reinitialised"] == ["3.weight", "3.bias", "5.weight", "5.bias"]
    assert planned["frozen"] == ["1.weight", "1.bias"] and planned["unused"] == []
    pinned = answer.json()["spec"]["warm_start"]["checkpoint"]
    assert isinstance(pinned, int) and pinned == planned["checkpoint_id"]
    dry = client.post("/v1/jobs?dry_run=true", json={"spec": spec}).json()
    assert dry["warm_start"] == planned

    job = run(client, settings, spec)
    assert job["warm_start"] == planned  # GET /v1/jobs/{id}
    lines = [x["message"] for x in client.get(f"/v1/jobs/{job['id']}/logs").json()["items"]]
    assert planned["summary"] in lines, lines  # the worker's own report, word for word
    # What the worker's loading does with this spec and these weights: the same plan.
    weights = st_load(client.get(f"/v1/jobs/{source}/checkpoints/{pinned}/download").content)
    resolved = JobSpec.model_validate(job["spec"])
    info = builtin_info(resolved.dataset.source)  # type: ignore[arg-type]
    done = apply_warm_start(build_model(resolved, info), WarmStart(weights, ["layers.1"]))
    assert {"summary": done.summary(), **done.as_json()} == {
        k: v for k, v in planned.items() if k not in ("source_job_id", "checkpoint_id", "planned")
    }


def test_422s_before_anything_runs(client: TestClient, settings: Settings) -> None:
    source = run(client, settings, {"dataset": IRIS, "model": {"kind": "mlp", "hidden_units": [8]},
                                    "epochs": 1})["id"]  # fmt: skip

    def errors(spec: dict[str, Any]) -> dict[str, str]:
        r = client.post("/v1/specs/validate", json={"spec": spec})
        assert r.status_code == 422, r.text
        return {e["loc"]: e["type"] for e in r.json()["errors"]}

    other = {"dataset": synthetic(7, 2), "model": {"kind": "mlp", "hidden_units": [16]},
             "warm_start": {"job_id": source}}  # fmt: skip
    assert errors(other) == {"spec.warm_start": "warm_start_nothing_loads"}
    same = {"dataset": IRIS, "model": {"kind": "mlp", "hidden_units": [8]}}
    for field, name in (("freeze", "42"), ("reset", "layers.9")):
        warm = {"job_id": source, field: ["layers.0", name]}
        assert errors({**same, "warm_start": warm}) == {
            f"spec.warm_start.{field}.1": "warm_start_unknown_layer"
        }


def test_best_is_pinned_at_submit_against_retention_and_deletion(
    client: TestClient, settings: Settings
) -> None:
    source = run(client, settings, {"dataset": IRIS, "epochs": 3,
                                    "checkpointing": {"keep_last": 3, "keep_best": 1,
                                                      "monitor": "val_loss"}})["id"]  # fmt: skip
    ckpts = client.get(f"/v1/jobs/{source}/checkpoints").json()["items"]
    best = next(c["id"] for c in ckpts if c["is_best"])
    r = client.post("/v1/jobs", json={"spec": {"dataset": IRIS, "epochs": 1,
                                               "warm_start": {"job_id": source}}})  # fmt: skip
    dependent = r.json()
    assert (
        dependent["spec"]["warm_start"]["checkpoint"]
        == best
        == dependent["warm_start"]["checkpoint_id"]
    )
    # Retention after submit (as a retried source keeping none of these would) spares it...
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        gone = apply_retention(s, source, Retention(0, 0, "val_loss", "min"))
        s.commit()
    assert gone == [c["id"] for c in ckpts if c["id"] != best]
    # ... and deleting the source job is refused while the dependent waits: kept.
    assert client.delete(f"/v1/jobs/{source}").status_code == 409
    kept = client.get(f"/v1/jobs/{source}/checkpoints").json()["items"]
    assert [c["id"] for c in kept] == [best]
    run_job(dependent["id"], settings)
    done = client.get(f"/v1/jobs/{dependent['id']}").json()
    assert done["status"] == "succeeded", done
    # A sweep warm-starts every trial from the one checkpoint its base spec pinned.
    lrs = {"kind": "choice", "values": [0.01, 0.001]}
    base = {"dataset": IRIS, "epochs": 1, "warm_start": {"job_id": source, "checkpoint": "latest"}}
    sweep = client.post("/v1/sweeps", json={"spec": base, "parameters": {"optimizer.lr": lrs},
                                            "max_concurrent_trials": 2})  # fmt: skip
    assert sweep.status_code == 201, sweep.text
    trials = client.get(f"/v1/sweeps/{sweep.json()['id']}/trials").json()["items"]
    specs = [client.get(f"/v1/jobs/{t['job_id']}").json()["spec"] for t in trials]
    assert len(specs) == 2 and all(s["warm_start"]["checkpoint"] == best for s in specs)
    assert client.post(f"/v1/sweeps/{sweep.json()['id']}/cancel").status_code == 200
    assert client.delete(f"/v1/jobs/{source}").status_code == 204  # no longer needed

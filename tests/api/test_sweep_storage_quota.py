"""A sweep whose trials could not fit the team's storage quota is refused at creation,
with the arithmetic, as a job is at submit (issue 28; tests/api/test_storage_checkpoint_room.py
for the job)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.test_storage_api import team_and_key

# 4 features -> 16 -> 3 classes: 131 parameters, 524 bytes at fp32; Adam's two slots 1,048:
# 1,572 bytes a checkpoint. 10 epochs save 10 checkpoints.
IRIS: dict[str, Any] = {
    "dataset": {"source": {"kind": "builtin", "name": "iris"}},
    "model": {"kind": "mlp", "hidden_units": [16]},
    "optimizer": {"kind": "adam", "lr": 0.01},
    "epochs": 10,
    "checkpointing": {"keep_last": 5, "keep_best": 1},  # 6 x 1,572 = 9,432 a trial
}
LR = {"optimizer.lr": {"kind": "log_uniform", "low": 0.001, "high": 0.1}}


def _sweep(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    payload = {"spec": IRIS, "parameters": LR, "max_trials": 4, **body}
    return client.post("/v1/sweeps", json=payload, headers=headers)


def test_trials_that_together_cannot_fit_are_refused_at_max_trials(client: TestClient) -> None:
    _, headers = team_and_key(client, "sweep-room", max_storage_bytes=50_000)
    r = _sweep(client, headers, max_trials=10)
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert (error["loc"], error["type"]) == ("max_trials", "checkpoints_over_storage_quota")
    msg = error["msg"]
    assert "10 trials, each keeping at least 9,432 bytes" in msg, msg
    assert "6 x 1,572 bytes, weights 524 + optimizer state 1,048) = 94,320 bytes" in msg, msg
    assert "50,000 bytes the team has left of its storage quota of 50,000 (0 stored)" in msg
    assert "at most 5 trials fit" in msg
    assert client.get("/v1/jobs", headers=headers).json()["items"] == []  # nothing queued
    assert _sweep(client, headers, max_trials=5).status_code == 201  # 47,160 fits


def test_a_trial_that_alone_cannot_fit_names_the_parameter(client: TestClient) -> None:
    _, headers = team_and_key(client, "sweep-wide", max_storage_bytes=100_000)
    wide = {"model.hidden_units": {"kind": "choice", "values": [[16], [512]]}}
    r = _sweep(client, headers, parameters=wide, max_trials=2)
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["loc"] == 'parameters["model.hidden_units"]', error
    assert error["type"] == "checkpoints_over_storage_quota"
    # 4*512 + 512 + 512*3 + 3 = 4,099 parameters: 16,396 + 32,792 bytes a checkpoint.
    assert "with model.hidden_units=[512], a trial keeps 6 checkpoints" in error["msg"]
    assert (
        "x 49,188 bytes (weights 16,396 + optimizer state 32,792) = 295,128 bytes" in error["msg"]
    )
    wide_base = {**IRIS, "model": {"kind": "mlp", "hidden_units": [512]}}
    keep = _sweep(client, headers, spec=wide_base)  # the base spec over, whatever the lr
    assert keep.status_code == 422
    assert keep.json()["errors"][0]["loc"] == "spec.checkpointing.keep_last"  # the base spec


def test_a_full_team_gets_a_507(client: TestClient) -> None:
    team_id, headers = team_and_key(client, "sweep-full", max_storage_bytes=10**6)
    csv = b"a,b,label\n" + b"".join(f"{i},{i * 2},{i % 2}\n".encode() for i in range(40))
    up = client.post("/v1/datasets", data={"format": "csv"}, files={"file": ("t.csv", csv)},
                     headers=headers)  # fmt: skip
    assert up.status_code == 201, up.text
    lowered = client.patch(f"/v1/admin/teams/{team_id}", json={"max_storage_bytes": 1})
    assert lowered.status_code == 200, lowered.text
    r = _sweep(client, headers)
    assert r.status_code == 507, r.text
    assert r.json()["storage"]["quota_bytes"] == 1

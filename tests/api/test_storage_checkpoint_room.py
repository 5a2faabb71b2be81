"""At submit and at POST /v1/specs/validate, the checkpoints a job keeps (keep_last +
keep_best, at most the ones its run saves) times the size its plan implies (weights +
optimizer state) must fit what the team has left of its storage quota: else a 422 at
spec.checkpointing.keep_last that shows the arithmetic (issue 28, finding 6)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.test_storage_api import team_and_key

# 4 features -> 16 -> 3 classes: 4*16 + 16 + 16*3 + 3 = 131 parameters, 524 bytes at fp32;
# Adam keeps two slots per parameter (exp_avg, exp_avg_sq): 1,048 bytes. 1,572 a checkpoint.
IRIS = {
    "dataset": {"source": {"kind": "builtin", "name": "iris"}},
    "model": {"kind": "mlp", "hidden_units": [16]},
    "optimizer": {"kind": "adam", "lr": 0.01},
    "epochs": 10,
    "checkpointing": {"keep_last": 1000, "keep_best": 1},
}


def _spec(**checkpointing: int) -> dict[str, object]:
    return {**IRIS, "checkpointing": {**IRIS["checkpointing"], **checkpointing}}  # type: ignore[dict-item]


def test_submit_refuses_checkpoints_that_cannot_fit(client: TestClient) -> None:
    _, headers = team_and_key(client, "roomless", max_storage_bytes=10_000)
    r = client.post("/v1/jobs", json={"spec": _spec()}, headers=headers)
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["loc"] == "spec.checkpointing.keep_last"
    assert error["type"] == "checkpoints_over_storage_quota"
    msg = error["msg"]
    # 10 epochs, one checkpoint each: 10 of the 1,001 are ever kept.
    assert "keep_last 1000 + keep_best 1 checkpoints, of the 10 this run saves" in msg, msg
    assert "10 x 1,572 bytes (weights 524 + optimizer state 1,048) = 15,720 bytes" in msg, msg
    assert "10,000 bytes the team has left of its storage quota of 10,000 (0 stored)" in msg
    assert "at most 6 fit" in msg
    # The same answer from the dry runs.
    checked = client.post("/v1/specs/validate", json={"spec": _spec()}, headers=headers)
    assert checked.status_code == 422 and checked.json()["errors"] == [error]
    dry = client.post("/v1/jobs?dry_run=true", json={"spec": _spec()}, headers=headers)
    assert dry.status_code == 422 and dry.json()["errors"] == [error]


def test_what_fits_is_accepted(client: TestClient) -> None:
    _, headers = team_and_key(client, "roomy", max_storage_bytes=10_000)
    fits = _spec(keep_last=5, keep_best=1)  # 6 x 1,572 = 9,432
    assert client.post("/v1/jobs", json={"spec": fits}, headers=headers).status_code == 201
    few = {**_spec(), "epochs": 3}  # keep_last 1000, but the run saves only 3: 4,716
    assert client.post("/v1/jobs", json={"spec": few}, headers=headers).status_code == 201


def test_sgd_without_momentum_keeps_no_optimizer_state(client: TestClient) -> None:
    _, headers = team_and_key(client, "plain-sgd", max_storage_bytes=5_000)
    spec = {**_spec(keep_last=9, keep_best=1), "optimizer": {"kind": "sgd", "lr": 0.1}}
    ok = client.post("/v1/jobs", json={"spec": spec}, headers=headers)  # 10 x 524 = 5,240
    assert ok.status_code == 422
    assert "10 x 524 bytes (weights 524 + optimizer state 0)" in ok.json()["errors"][0]["msg"]
    spec["checkpointing"] = {"keep_last": 8, "keep_best": 1}  # 9 x 524 = 4,716
    assert client.post("/v1/jobs", json={"spec": spec}, headers=headers).status_code == 201


def test_not_even_one_checkpoint_fits(client: TestClient) -> None:
    _, headers = team_and_key(client, "tiny", max_storage_bytes=1_000)
    r = client.post("/v1/jobs", json={"spec": _spec(keep_last=1, keep_best=0)}, headers=headers)
    assert r.status_code == 422
    assert "not even one fits" in r.json()["errors"][0]["msg"]


def test_no_quota_no_check(client: TestClient) -> None:
    _, headers = team_and_key(client, "unbounded")  # the default quota: 20 GiB
    assert client.post("/v1/jobs", json={"spec": _spec()}, headers=headers).status_code == 201


def test_a_submit_sums_the_team_storage_once(client: TestClient, monkeypatch: Any) -> None:
    """Is the team full, do the checkpoints fit: one read of its stored bytes for both."""
    from api.storage import repository

    calls: list[str] = []
    usage = repository.usage

    def counted(session: Any, team_id: str) -> repository.StorageUsage:
        calls.append(team_id)
        return usage(session, team_id)

    monkeypatch.setattr(repository, "usage", counted)
    _, headers = team_and_key(client, "counted", max_storage_bytes=10**9)
    r = client.post("/v1/jobs", json={"spec": _spec(keep_last=2)}, headers=headers)
    assert r.status_code == 201, r.text
    assert len(calls) == 1

"""Checkpoint downloads accept the aliases ``best`` and ``latest`` for the checkpoint id."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.settings import Settings
from tests.api.test_checkpoints_api import finished_job

SPEC: dict[str, object] = {
    "dataset": {"source": {"kind": "builtin", "name": "iris"}},
    "model": {"kind": "mlp", "hidden_units": [4]},
    "epochs": 4,
    "checkpointing": {"keep_last": 1, "keep_best": 1, "monitor": "val_loss"},
}


def test_best_and_latest_aliases(client: TestClient, settings: Settings) -> None:
    job_id = finished_job(client, settings, SPEC)
    items = client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"]
    best = next(c for c in items if c["is_best"])
    latest = max(items, key=lambda c: c["id"])
    url = f"/v1/jobs/{job_id}/checkpoints/{{}}/download"
    for alias, expected in (("best", best), ("latest", latest)):
        r = client.get(url.format(alias))
        assert r.status_code == 200, r.text
        assert r.headers["x-checksum-sha256"] == expected["sha256"]
        assert r.content == client.get(url.format(expected["id"])).content
    assert client.get(url.format("newest")).status_code == 422
    assert client.get(url.format("999999")).status_code == 404
    # No best kept: a 404, never another checkpoint.
    quiet = finished_job(client, settings, {**SPEC, "checkpointing": {"keep_best": 0}})
    r = client.get(f"/v1/jobs/{quiet}/checkpoints/best/download")
    assert r.status_code == 404

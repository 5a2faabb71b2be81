"""Checkpoints over HTTP (list, streamed download that loads into the spec's model) and
POST /v1/jobs/{id}/retry, on SQLite with a real in-process worker run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file
from sqlalchemy import delete
from sqlalchemy.orm import Session

from api.checkpoints import repository as ckrepo
from api.db import blobs
from api.db.session import session_factory
from api.ledger import events
from api.ledger.models import Job
from api.settings import Settings
from api.teams.repository import create_api_key, get_or_create_team
from ml.checks import builtin_info
from ml.models import build_model
from ml.spec import BuiltinSource, JobSpec
from tests.conftest import FakeQueue
from worker.runner import run_job

SPEC = {
    "dataset": {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 16},
    "model": {"kind": "mlp", "hidden_units": [8]},
    "epochs": 4,
    "seed": 3,
    "checkpointing": {"every_n_epochs": 1, "keep_last": 2, "keep_best": 1},
}


def finished_job(client: TestClient, settings: Settings, spec: dict[str, object] = SPEC) -> str:
    r = client.post("/v1/jobs", json={"spec": spec})
    assert r.status_code == 201, r.text
    job_id: str = r.json()["id"]
    run_job(job_id, settings)
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
    return job_id


def spec_model(spec: dict[str, object]) -> torch.nn.Module:
    resolved = JobSpec.model_validate(spec)
    assert isinstance(resolved.dataset.source, BuiltinSource)
    return build_model(resolved, builtin_info(resolved.dataset.source))


def test_list_and_download_checkpoints(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    job_id = finished_job(client, settings)
    r = client.get(f"/v1/jobs/{job_id}/checkpoints")
    assert r.status_code == 200
    items = r.json()["items"]
    # every epoch saved one (epochs 0..2, then the final one); retention kept the last 2
    # plus the best by val_loss, which is among them or older.
    assert 2 <= len(items) <= 3
    assert items[-1]["step"] == client.get(f"/v1/jobs/{job_id}").json()["progress"]["step"]
    assert sum(i["is_best"] for i in items) == 1
    assert set(items[0]) == {
        "id", "step", "epoch", "metrics", "is_best", "size_bytes", "sha256", "created_at",
    }  # fmt: skip
    assert "val_loss" in items[-1]["metrics"]
    assert r.json()["next_cursor"] is None
    paged, cursor = [], None
    while True:  # pages of one, oldest first
        page = client.get(
            f"/v1/jobs/{job_id}/checkpoints",
            params={"limit": 1, **({"cursor": cursor} if cursor else {})},
        ).json()
        paged += page["items"]
        if (cursor := page["next_cursor"]) is None:
            break
    assert paged == items
    for item in items:
        url = f"/v1/jobs/{job_id}/checkpoints/{item['id']}/download"
        with client.stream("GET", url) as d:
            assert d.status_code == 200
            assert d.headers["content-type"] == "application/octet-stream"
            assert d.headers["content-length"] == str(item["size_bytes"])
            assert "attachment" in d.headers["content-disposition"]
            assert ".safetensors" in d.headers["content-disposition"]
            body = b"".join(d.iter_bytes())
        assert len(body) == item["size_bytes"]
        assert hashlib.sha256(body).hexdigest() == item["sha256"]
        path = tmp_path / f"{item['id']}.safetensors"
        path.write_bytes(body)
        model = spec_model(SPEC)
        model.load_state_dict(load_file(path))  # strict: every tensor, right shapes


def test_download_streams_one_chunk_row_at_a_time(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = finished_job(client, settings)
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        latest = ckrepo.latest_checkpoint(s, job_id)
        assert latest is not None
        whole = ckrepo.read_file(s, latest.id, "weights")
    reads: list[int] = []
    real = blobs.read_chunk

    def counting(session: Session, ref: blobs.BlobRef, seq: int) -> bytes | None:
        data = real(session, ref, seq)
        reads.append(len(data or b""))
        return data

    monkeypatch.setattr(blobs, "read_chunk", counting)
    # Re-store the weights in tiny chunks, so the file spans many rows.
    ref = ckrepo.file_ref(latest.id, "weights")
    with factory() as s:
        team_id = s.get(Job, job_id).team_id  # type: ignore[union-attr]
        s.execute(delete(blobs.BlobChunk).where(*ref.where()))
        assert blobs.write(s, ref, team_id, whole, chunk_bytes=100).chunks > 1
        s.commit()
    r = client.get(f"/v1/jobs/{job_id}/checkpoints/{latest.id}/download")
    assert r.content == whole
    assert len(reads) == -(-len(whole) // 100) and max(reads) == 100


def test_checkpoints_are_team_scoped_and_errors_are_problems(
    client: TestClient, settings: Settings
) -> None:
    job_id = finished_job(client, settings)
    ckpt = client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"][0]["id"]
    with session_factory(settings.resolved_database_url)() as s:
        other = get_or_create_team(s, "other-team")
        _, key = create_api_key(s, other, "member")
        s.commit()
    stranger = {"Authorization": f"Bearer {key}"}
    for url in (
        f"/v1/jobs/{job_id}/checkpoints",
        f"/v1/jobs/{job_id}/checkpoints/{ckpt}/download",
        "/v1/jobs/nope/checkpoints",
        f"/v1/jobs/{job_id}/checkpoints/999999/download",
    ):
        headers = stranger if "nope" not in url and "999999" not in url else {}
        r = client.get(url, headers=headers)
        assert r.status_code == 404, url
        assert r.headers["content-type"].startswith("application/problem+json")
    r = client.get(f"/v1/jobs/{job_id}/checkpoints/abc/download")
    assert r.status_code == 422


def test_retry_requeues_failed_or_canceled_jobs_only(
    client: TestClient, settings: Settings, fake_queue: FakeQueue
) -> None:
    done = finished_job(client, settings)  # first: the worker runs the oldest queued job
    assert client.post(f"/v1/jobs/{done}/retry").status_code == 409  # succeeded
    queued = client.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    r = client.post(f"/v1/jobs/{queued}/retry")
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")

    client.post(f"/v1/jobs/{queued}/cancel")
    fake_queue.published.clear()
    r = client.post(f"/v1/jobs/{queued}/retry")
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "queued" and job["status_reason"] is None
    assert job["cancel_requested"] is False
    assert [t["to_status"] for t in job["transitions"]] == ["queued", "canceled", "queued"]
    assert fake_queue.published == [(queued, "trainforge")]
    assert fake_queue.committed_before_publish[-1] is True
    with session_factory(settings.resolved_database_url)() as s:
        statuses = [
            e.payload["to_status"]
            for e in events.events_after(s, queued, 0, 100)
            if e.kind == events.STATUS
        ]
    assert statuses == ["queued", "canceled", "queued"]
    assert client.post(f"/v1/jobs/{queued}/retry").status_code == 409  # already queued
    assert client.post("/v1/jobs/nope/retry").status_code == 404


def test_a_failed_job_retried_runs_again_and_resumes(
    client: TestClient, settings: Settings
) -> None:
    job_id = finished_job(client, settings)
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:  # pretend the end was a failure (e.g. the worker gave up)
        job = s.get(Job, job_id)
        assert job is not None
        job.status, job.status_reason = "failed", "worker_lost"
        s.commit()
    assert client.post(f"/v1/jobs/{job_id}/retry").status_code == 200
    run_job(job_id, settings)
    job = client.get(f"/v1/jobs/{job_id}").json()
    # The last checkpoint says the run had finished: the retry reports it, trains nothing.
    assert (job["status"], job["attempt"]) == ("succeeded", 2)
    assert job["progress"]["epoch"] == SPEC["epochs"]


def test_restore_best_weights_ends_with_the_best_checkpoint(
    client: TestClient, settings: Settings
) -> None:
    spec = {
        **SPEC,
        "epochs": 6,
        "optimizer": {"kind": "sgd", "lr": 0.5},  # jumpy: the best epoch is rarely the last
        "early_stopping": {"monitor": "val_loss", "patience": 100, "restore_best_weights": True},
        "checkpointing": {"every_n_epochs": 1, "keep_last": 100, "keep_best": 1},
    }
    job_id = finished_job(client, settings, spec)
    items = client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"]
    assert len(items) == 6  # after epochs 1-5, and the final one (nothing deleted)
    periodic, final = items[:-1], items[-1]
    best = min(periodic, key=lambda i: (i["metrics"]["val_loss"], i["id"]))
    if final["metrics"]["val_loss"] < best["metrics"]["val_loss"]:
        best = final  # the last epoch was the best: the final save is that epoch
    # The final checkpoint (what a user downloads last) holds the restored best weights,
    # with that epoch's metrics, and retention marks the best one.
    assert final["sha256"] == best["sha256"]
    assert final["metrics"] == best["metrics"]
    assert [i["id"] for i in items if i["is_best"]] == [best["id"]]

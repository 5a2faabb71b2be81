"""Storage (issue 17): DELETE an ended job with all it stored, a team's stored bytes, and the
optional per-team storage quota (507 for uploads)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.checkpoints import repository as ckpt_repo
from api.checkpoints.repository import Checkpoint
from api.db.blobs import BlobChunk
from api.db.session import session_factory
from api.ledger import metrics as metrics_repo
from api.ledger import repository as repo
from api.ledger.events import JobEvent
from api.ledger.models import JobTransition, MetricPoint
from api.settings import Settings
from api.teams.audit import AuditEntry

DIGITS = {"dataset": {"source": {"kind": "builtin", "name": "digits"}}}
RETENTION = ckpt_repo.Retention(keep_last=5, keep_best=1, monitor="loss", mode="min")
CSV = b"a,b,label\n" + b"".join(f"{i},{i * 2},{i % 2}\n".encode() for i in range(40))


def team_and_key(client: TestClient, name: str, **quotas: int) -> tuple[str, dict[str, str]]:
    team = client.post("/v1/admin/teams", json={"name": name, **quotas})
    assert team.status_code == 201, team.text
    key = client.post("/v1/admin/keys", json={"team": name}).json()["key"]
    return team.json()["id"], {"Authorization": f"Bearer {key}"}


def run_to_end(settings: Settings, job_id: str, *, weights: bytes, resume: bytes) -> None:
    """What a worker leaves behind: metrics, a checkpoint (with its event), a final status."""
    with session_factory(settings.resolved_database_url)() as s:
        attempt = repo.claim_job(s, job_id, 60.0)
        assert attempt is not None
        metrics_repo.write_metrics(s, job_id, attempt, [metrics_repo.Point("loss", 1, 0, 0.5)])
        ckpt_repo.save_checkpoint(s, job_id, attempt, step=1, epoch=0, metrics={"loss": 0.5},
                                  weights=weights, resume=resume, retention=RETENTION)  # fmt: skip
        repo.finish_job(s, job_id, attempt, status="succeeded", reason="completed")
        s.commit()


def rows_of(settings: Settings, job_id: str) -> dict[str, int]:
    with session_factory(settings.resolved_database_url)() as s:

        def count(model: type, *where: object) -> int:
            return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)

        return {
            "transitions": count(JobTransition, JobTransition.job_id == job_id),
            "metrics": count(MetricPoint, MetricPoint.job_id == job_id),
            "events": count(JobEvent, JobEvent.job_id == job_id),
            "checkpoints": count(Checkpoint, Checkpoint.job_id == job_id),
            "chunks": count(BlobChunk),
        }


def test_delete_removes_an_ended_job_and_everything_it_stored(
    client: TestClient, settings: Settings
) -> None:
    _, headers = team_and_key(client, "deleters")
    job = client.post("/v1/jobs", json={"spec": DIGITS}, headers=headers).json()
    # queued (or running): 409, nothing removed
    r = client.delete(f"/v1/jobs/{job['id']}", headers=headers)
    assert r.status_code == 409 and "queued" in r.json()["detail"]
    run_to_end(settings, job["id"], weights=b"w" * 3000, resume=b"r" * 1000)
    before = rows_of(settings, job["id"])
    assert all(before[k] > 0 for k in before), before
    # another team's job is a 404, never a 403, and stays
    _, stranger = team_and_key(client, "strangers")
    assert client.delete(f"/v1/jobs/{job['id']}", headers=stranger).status_code == 404
    r = client.delete(f"/v1/jobs/{job['id']}", headers=headers)
    assert r.status_code == 204, r.text
    assert rows_of(settings, job["id"]) == dict.fromkeys(before, 0)
    assert client.get(f"/v1/jobs/{job['id']}", headers=headers).status_code == 404
    assert client.delete(f"/v1/jobs/{job['id']}", headers=headers).status_code == 404
    with session_factory(settings.resolved_database_url)() as s:  # audited
        audited = s.scalars(select(AuditEntry).where(AuditEntry.action == "DELETE")).all()
        assert [(a.resource, a.outcome) for a in audited if a.outcome == 204] == [
            (f"/v1/jobs/{job['id']}", 204)
        ]


def test_admin_team_shows_checkpoint_and_dataset_bytes(
    client: TestClient, settings: Settings
) -> None:
    team_id, headers = team_and_key(client, "storers")
    empty = client.get(f"/v1/admin/teams/{team_id}")
    assert empty.status_code == 200, empty.text
    assert empty.json()["storage"] == {"checkpoint_bytes": 0, "dataset_bytes": 0,
                                       "total_bytes": 0, "max_storage_bytes": None}  # fmt: skip
    job = client.post("/v1/jobs", json={"spec": DIGITS}, headers=headers).json()
    run_to_end(settings, job["id"], weights=b"w" * 3000, resume=b"r" * 1000)
    upload = client.post("/v1/datasets", data={"format": "csv", "label_column": "label"},
                         files={"file": ("t.csv", CSV)}, headers=headers)  # fmt: skip
    assert upload.status_code == 201, upload.text
    storage = client.get(f"/v1/admin/teams/{team_id}").json()["storage"]
    assert storage["checkpoint_bytes"] == 4000
    assert storage["dataset_bytes"] == upload.json()["stored_bytes"] > 0
    assert storage["total_bytes"] == 4000 + storage["dataset_bytes"]
    assert client.get("/v1/admin/teams/nope").status_code == 404
    assert client.get(f"/v1/admin/teams/{team_id}", headers=headers).status_code == 403
    # deleting the job gives its bytes back
    assert client.delete(f"/v1/jobs/{job['id']}", headers=headers).status_code == 204
    assert client.get(f"/v1/admin/teams/{team_id}").json()["storage"]["checkpoint_bytes"] == 0


def test_an_upload_past_the_storage_quota_is_507_and_stores_nothing(client: TestClient) -> None:
    team_id, headers = team_and_key(client, "tight", max_storage_bytes=100)
    assert client.get(f"/v1/admin/teams/{team_id}").json()["max_storage_bytes"] == 100
    r = client.post("/v1/datasets", data={"format": "csv", "label_column": "label"},
                    files={"file": ("t.csv", CSV)}, headers=headers)  # fmt: skip
    assert r.status_code == 507, r.text
    assert "storage quota" in r.json()["detail"]
    assert client.get("/v1/datasets", headers=headers).json()["items"] == []
    # lifting the quota (null) lets it in
    patched = client.patch(f"/v1/admin/teams/{team_id}", json={"max_storage_bytes": None})
    assert patched.status_code == 200 and patched.json()["max_storage_bytes"] is None
    r = client.post("/v1/datasets", data={"format": "csv", "label_column": "label"},
                    files={"file": ("t.csv", CSV)}, headers=headers)  # fmt: skip
    assert r.status_code == 201, r.text


def test_a_team_at_its_storage_quota_cannot_submit_jobs(
    client: TestClient, settings: Settings
) -> None:
    team_id, headers = team_and_key(client, "full")
    job = client.post("/v1/jobs", json={"spec": DIGITS}, headers=headers).json()
    run_to_end(settings, job["id"], weights=b"w" * 3000, resume=b"r" * 1000)
    client.patch(f"/v1/admin/teams/{team_id}", json={"max_storage_bytes": 4000})
    r = client.post("/v1/jobs", json={"spec": DIGITS}, headers=headers)
    assert r.status_code == 507, r.text
    assert "storage quota of 4,000 bytes" in r.json()["detail"]
    assert client.delete(f"/v1/jobs/{job['id']}", headers=headers).status_code == 204
    # Room again, but not for this job's checkpoints (issue 28, 6): a 422 at keep_last.
    r = client.post("/v1/jobs", json={"spec": DIGITS}, headers=headers)
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["errors"]] == ["spec.checkpointing.keep_last"]
    client.patch(f"/v1/admin/teams/{team_id}", json={"max_storage_bytes": 10**7})
    assert client.post("/v1/jobs", json={"spec": DIGITS}, headers=headers).status_code == 201

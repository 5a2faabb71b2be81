"""Decided (README, Teams): an admin may cancel and retry another team's job; the job
stays that team's and the audit log names the admin's key (issue 18, item 8)."""

from __future__ import annotations

from fastapi.testclient import TestClient

SPEC = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 1}


def test_an_admin_cancels_and_retries_another_teams_job_on_the_record(
    client: TestClient,
) -> None:
    client.post("/v1/admin/teams", json={"name": "other", "max_queued_jobs": 1})
    key = client.post("/v1/admin/keys", json={"team": "other"}).json()["key"]
    member = {"Authorization": f"Bearer {key}"}
    job = client.post("/v1/jobs", json={"spec": SPEC}, headers=member).json()
    canceled = client.post(f"/v1/jobs/{job['id']}/cancel")  # the admin key
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    # The team's queue is free again, so its own next submission fits; the retry then
    # counts against the same team's quota.
    assert client.post("/v1/jobs", json={"spec": SPEC}, headers=member).status_code == 201
    assert client.post(f"/v1/jobs/{job['id']}/retry").status_code == 429
    admin_id = next(k["id"] for k in client.get("/v1/admin/keys").json()["items"]
                    if k["role"] == "admin")  # fmt: skip
    audit = client.get("/v1/admin/audit").json()["items"]
    assert any(
        e["resource"] == f"/v1/jobs/{job['id']}/cancel" and e["key_id"] == admin_id for e in audit
    )
    other_team = client.get(f"/v1/jobs/{job['id']}", headers=member).json()
    assert other_team["status"] == "canceled"  # still the other team's job

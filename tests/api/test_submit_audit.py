"""POST /v1/jobs writes its audit row in the job's own transaction (issue 16): exactly one
row per request, whatever the outcome."""

from __future__ import annotations

from fastapi.testclient import TestClient

SPEC = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 1}


def _job_rows(client: TestClient) -> list[int]:
    items = client.get("/v1/admin/audit", params={"limit": 100}).json()["items"]
    return sorted(
        e["outcome"] for e in items if e["action"] == "POST" and e["resource"] == "/v1/jobs"
    )


def test_a_created_job_has_one_audit_row_with_its_201(client: TestClient) -> None:
    assert client.post("/v1/jobs", json={"spec": SPEC}).status_code == 201
    assert _job_rows(client) == [201]


def test_replays_and_refusals_are_still_audited_once_each(client: TestClient) -> None:
    headers = {"Idempotency-Key": "k1"}
    assert client.post("/v1/jobs", json={"spec": SPEC}, headers=headers).status_code == 201
    assert client.post("/v1/jobs", json={"spec": SPEC}, headers=headers).status_code == 200
    assert client.post("/v1/jobs", json={"spec": {"epochs": 1}}).status_code == 422
    assert _job_rows(client) == [200, 201, 422]

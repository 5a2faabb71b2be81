"""POST /v1/jobs?dry_run=true stores nothing; unknown query parameters are refused;
a retry records the status it left (failed/canceled -> queued)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import FakeQueue

SPEC = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 3}


def job_count(client: TestClient) -> int:
    return len(client.get("/v1/jobs", params={"limit": 100}).json()["items"])


def test_dry_run_answers_the_resolved_spec_and_stores_nothing(
    client: TestClient, fake_queue: FakeQueue
) -> None:
    r = client.post("/v1/jobs", params={"dry_run": "true"}, json={"spec": SPEC, "name": "x"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["spec"]["epochs"] == 3 and body["spec"]["optimizer"]["kind"]  # defaults filled
    assert body["plan"]["steps_per_epoch"] > 0
    assert job_count(client) == 0
    assert fake_queue.published == []


def test_dry_run_of_an_invalid_spec_is_a_422_naming_the_field(client: TestClient) -> None:
    bad = {**SPEC, "optimizer": {"kind": "adam", "lr": -1}}
    r = client.post("/v1/jobs?dry_run=true", json={"spec": bad})
    assert r.status_code == 422
    assert "spec.optimizer.lr" in [e["loc"] for e in r.json()["errors"]]


def test_an_unknown_query_parameter_creates_no_job(client: TestClient) -> None:
    r = client.post("/v1/jobs?dryrun=true", json={"spec": SPEC})
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["errors"]] == ["query.dryrun"]
    assert job_count(client) == 0
    assert client.post("/v1/jobs?dry_run=false", json={"spec": SPEC}).status_code == 201


def test_retry_records_the_status_it_left(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "canceled"
    job = client.post(f"/v1/jobs/{job_id}/retry").json()
    assert job["status"] == "queued"
    moves = [(t["from_status"], t["to_status"]) for t in job["transitions"]]
    assert moves == [(None, "queued"), ("queued", "canceled"), ("canceled", "queued")]

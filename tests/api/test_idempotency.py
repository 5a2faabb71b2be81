"""POST /v1/jobs honours Idempotency-Key, scoped to the team."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from tests.conftest import FakeQueue

SPEC = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 2}


def test_same_key_same_body_returns_the_original(client: TestClient, fake_queue: FakeQueue) -> None:
    first = client.post("/v1/jobs", json={"spec": SPEC}, headers={"Idempotency-Key": "k1"})
    again = client.post("/v1/jobs", json={"spec": SPEC}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert len(fake_queue.published) == 1
    assert len(client.get("/v1/jobs").json()["items"]) == 1


def test_same_key_other_body_is_422(client: TestClient) -> None:
    client.post("/v1/jobs", json={"spec": SPEC}, headers={"Idempotency-Key": "k2"})
    r = client.post(
        "/v1/jobs", json={"spec": {**SPEC, "epochs": 3}}, headers={"Idempotency-Key": "k2"}
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["type"] == "idempotency_key_reused"


def test_concurrent_requests_with_one_key_create_one_job(client: TestClient) -> None:
    def submit(_: int) -> tuple[int, str]:
        r = client.post("/v1/jobs", json={"spec": SPEC}, headers={"Idempotency-Key": "race"})
        return r.status_code, r.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(submit, range(16)))
    assert {job_id for _, job_id in results} == {results[0][1]}
    assert sorted(code for code, _ in results).count(201) == 1
    assert len(client.get("/v1/jobs").json()["items"]) == 1

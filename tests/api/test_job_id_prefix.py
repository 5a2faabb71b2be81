"""GET /v1/jobs?id_prefix=: the CLI's short ids, within the caller's team."""

from __future__ import annotations

from fastapi.testclient import TestClient

SPEC = {"spec": {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 1}}


def test_id_prefix_finds_the_job_and_nothing_else(client: TestClient) -> None:
    ids = [client.post("/v1/jobs", json=SPEC).json()["id"] for _ in range(3)]
    for job_id in ids:
        r = client.get("/v1/jobs", params={"id_prefix": job_id[:10]})
        assert r.status_code == 200
        assert [j["id"] for j in r.json()["items"]] == [job_id]
    r = client.get("/v1/jobs", params={"id_prefix": ids[0]})
    assert [j["id"] for j in r.json()["items"]] == [ids[0]]


def test_a_bad_prefix_is_a_422_naming_it(client: TestClient) -> None:
    for bad in ("abc", "zzzzzz", "a%" + "0" * 5):
        r = client.get("/v1/jobs", params={"id_prefix": bad})
        assert r.status_code == 422, bad
        assert r.json()["errors"][0]["loc"].endswith("id_prefix")

"""Every status the API answers is in its OpenAPI document (issue 18, item 8).

Each case provokes the status for real and then looks it up in the served
document (as a problem+json `Problem`)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

SPEC = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 1}
PROBLEM = "application/problem+json"


def _declared(client: TestClient, method: str, path: str, status: int) -> None:
    doc: dict[str, Any] = client.app.openapi()  # type: ignore[attr-defined]
    response = doc["paths"][path][method.lower()]["responses"].get(str(status))
    assert response is not None, f"{method} {path} answers {status} but does not declare it"
    assert PROBLEM in response.get("content", {}), response


def test_the_queued_quota_429_is_declared(client: TestClient) -> None:
    client.post("/v1/admin/teams", json={"name": "tiny", "max_queued_jobs": 1})
    key = client.post("/v1/admin/keys", json={"team": "tiny"}).json()["key"]
    member = {"Authorization": f"Bearer {key}"}
    assert client.post("/v1/jobs", json={"spec": SPEC}, headers=member).status_code == 201
    r = client.post("/v1/jobs", json={"spec": SPEC}, headers=member)
    assert r.status_code == 429 and r.headers["retry-after"]
    _declared(client, "POST", "/v1/jobs", 429)


def test_a_malformed_multipart_400_is_declared(client: TestClient) -> None:
    r = client.post(
        "/v1/datasets",
        content=b"--xyz\r\nContent-Disposition: form-data; name=\r\n\r\nno end",
        headers={"Content-Type": "multipart/form-data"},  # no boundary: unparseable
    )
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    _declared(client, "POST", "/v1/datasets", 400)


def test_a_wrong_media_type_415_is_declared(client: TestClient) -> None:
    r = client.post("/v1/jobs", content=b"spec=1", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415, r.text
    _declared(client, "POST", "/v1/jobs", 415)
    _declared(client, "POST", "/v1/datasets", 415)

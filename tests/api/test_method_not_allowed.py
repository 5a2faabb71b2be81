"""A 405 lists every method the path allows, not one route's (issue 18, item 8)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/jobs", {"GET", "HEAD", "POST"}),
        ("PUT", "/v1/datasets", {"GET", "HEAD", "POST"}),
        ("POST", "/v1/datasets/abc", {"GET", "HEAD", "DELETE"}),
        ("PUT", "/v1/admin/teams", {"GET", "HEAD", "POST"}),
        ("GET", "/v1/jobs/abc/cancel", {"POST"}),
    ],
)
def test_405_lists_every_allowed_method(
    client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    r = client.request(method, path)
    assert r.status_code == 405, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert set(r.headers["allow"].split(", ")) == allowed
    for m in allowed - {"HEAD"}:
        assert m in r.json()["detail"]

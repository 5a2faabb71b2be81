"""GET /v1/version: the server's release (the CLI compares majors)."""

from __future__ import annotations

from importlib.metadata import version

from fastapi.testclient import TestClient


def test_version_names_the_installed_release(client: TestClient) -> None:
    r = client.get("/v1/version")
    assert r.status_code == 200
    assert r.json() == {"version": version("trainforge"), "api": "v1"}

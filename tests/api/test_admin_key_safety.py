"""Key management cannot lock everyone out or leak a secret (issue 18, item 8)."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_the_last_admin_key_cannot_be_revoked(client: TestClient) -> None:
    mine = [k for k in client.get("/v1/admin/keys").json()["items"] if k["role"] == "admin"]
    assert len(mine) == 1
    r = client.post(f"/v1/admin/keys/{mine[0]['id']}/revoke")
    assert r.status_code == 409, r.text
    assert "last active admin key" in r.json()["detail"]
    assert client.get("/v1/admin/teams").status_code == 200  # still works
    # With a second admin key, the first one can go.
    second = client.post("/v1/admin/keys", json={"team": "default", "role": "admin"}).json()
    assert client.post(f"/v1/admin/keys/{mine[0]['id']}/revoke").status_code == 200
    other = {"Authorization": f"Bearer {second['key']}"}
    assert client.post(f"/v1/admin/keys/{second['id']}/revoke", headers=other).status_code == 409


def test_key_creation_is_not_cached(client: TestClient) -> None:
    r = client.post("/v1/admin/keys", json={"team": "default", "role": "member"})
    assert r.status_code == 201
    assert r.headers["cache-control"] == "no-store"

"""Teams, keys and quotas over HTTP (SQLite, in-process)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

SPEC = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}}


def test_admin_creates_a_team_and_a_key_that_works_until_revoked(client: TestClient) -> None:
    team = client.post("/v1/admin/teams", json={"name": "vision"})
    assert team.status_code == 201
    assert client.post("/v1/admin/teams", json={"name": "vision"}).status_code == 409
    created = client.post("/v1/admin/keys", json={"team": "vision", "role": "member"})
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("tf_")
    member = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/jobs", headers=member).status_code == 200
    assert client.get("/v1/admin/teams", headers=member).status_code == 403
    listed = client.get("/v1/admin/keys").json()["items"]
    assert all("key" not in k and "secret_hash" not in k for k in listed)
    key_id = created.json()["id"]
    assert client.post(f"/v1/admin/keys/{key_id}/revoke").status_code == 200
    assert client.get("/v1/jobs", headers=member).status_code == 401


def test_expired_key_is_401(client: TestClient) -> None:
    client.post("/v1/admin/teams", json={"name": "nlp"})
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    key = client.post("/v1/admin/keys", json={"team": "nlp", "expires_at": past}).json()["key"]
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_queued_quota_refuses_with_429(client: TestClient) -> None:
    team = client.post("/v1/admin/teams", json={"name": "small", "max_queued_jobs": 2}).json()
    key = client.post("/v1/admin/keys", json={"team": "small"}).json()["key"]
    member = {"Authorization": f"Bearer {key}"}
    for _ in range(2):
        assert client.post("/v1/jobs", json={"spec": SPEC}, headers=member).status_code == 201
    r = client.post("/v1/jobs", json={"spec": SPEC}, headers=member)
    assert r.status_code == 429
    assert "quota" in r.json()["detail"]
    # Raising the quota lets the next one in.
    patched = client.patch(f"/v1/admin/teams/{team['id']}", json={"max_queued_jobs": 3})
    assert patched.json()["max_queued_jobs"] == 3
    assert client.post("/v1/jobs", json={"spec": SPEC}, headers=member).status_code == 201


def test_running_quota_is_shown_as_queue_reason(client: TestClient) -> None:
    from api.db.session import session_factory
    from api.ledger import repository as repo

    team = client.post("/v1/admin/teams", json={"name": "one", "max_running_jobs": 1}).json()
    key = client.post("/v1/admin/keys", json={"team": "one"}).json()["key"]
    member = {"Authorization": f"Bearer {key}"}
    first = client.post("/v1/jobs", json={"spec": SPEC}, headers=member).json()
    second = client.post("/v1/jobs", json={"spec": SPEC}, headers=member).json()
    assert second["queue_reason"] == "waiting_for_worker"
    settings = client.app.state.settings  # type: ignore[attr-defined]
    with session_factory(settings.resolved_database_url)() as s:
        assert repo.claim_job(s, first["id"], 30) == 1
        s.commit()
    again = client.get(f"/v1/jobs/{second['id']}", headers=member).json()
    assert again["queue_reason"] == "quota"
    assert team["max_running_jobs"] == 1


def test_audit_log_is_admin_only_and_lists_mutations(client: TestClient) -> None:
    client.post("/v1/jobs", json={"spec": SPEC})
    entries = client.get("/v1/admin/audit").json()["items"]
    assert any(
        e["action"] == "POST" and e["resource"] == "/v1/jobs" and e["outcome"] == 201
        for e in entries
    )

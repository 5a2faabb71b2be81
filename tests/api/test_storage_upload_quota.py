"""An upload over the team's storage quota is a 507 whose problem body carries the team's
figures (`storage`), and stores nothing; so is a submit from a full team (issue 28, 6).
507 Insufficient Storage, not 413: the team's stored bytes are the problem, not this
request's size (413 is the per-upload limit)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.settings import Settings
from tests.api.test_storage_api import CSV, DIGITS, run_to_end, team_and_key

FORM = {"format": "csv", "label_column": "label"}
OTHER = b"a,b,label\n" + b"".join(f"{i},{i * 3},{i % 2}\n".encode() for i in range(60))


def _storage(client: TestClient, team_id: str) -> dict[str, int]:
    r = client.get(f"/v1/admin/teams/{team_id}")
    assert r.status_code == 200, r.text
    return dict(r.json()["storage"])


def test_an_upload_over_the_quota_is_a_507_with_the_team_usage(client: TestClient) -> None:
    team_id, headers = team_and_key(client, "uploaders")
    first = client.post("/v1/datasets", data=FORM, files={"file": ("a.csv", CSV)}, headers=headers)
    assert first.status_code == 201, first.text
    stored = _storage(client, team_id)["dataset_bytes"]
    assert stored > 0
    client.patch(f"/v1/admin/teams/{team_id}", json={"max_storage_bytes": stored + 10})
    r = client.post("/v1/datasets", data=FORM, files={"file": ("b.csv", OTHER)}, headers=headers)
    assert r.status_code == 507, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["title"] == "Insufficient Storage"
    figures = body["storage"]
    assert figures["stored_bytes"] == figures["dataset_bytes"] == stored
    assert figures["checkpoint_bytes"] == 0
    assert figures["quota_bytes"] == stored + 10
    assert figures["available_bytes"] == 10
    assert figures["request_bytes"] > 10
    assert f"storage quota of {stored + 10:,} bytes" in body["detail"]
    assert _storage(client, team_id)["dataset_bytes"] == stored  # nothing written


def test_a_submit_from_a_full_team_is_a_507_with_the_team_usage(
    client: TestClient, settings: Settings
) -> None:
    team_id, headers = team_and_key(client, "full-507")
    job = client.post("/v1/jobs", json={"spec": DIGITS}, headers=headers).json()
    run_to_end(settings, job["id"], weights=b"w" * 3000, resume=b"r" * 1000)
    client.patch(f"/v1/admin/teams/{team_id}", json={"max_storage_bytes": 3000})
    r = client.post("/v1/jobs", json={"spec": DIGITS}, headers=headers)
    assert r.status_code == 507, r.text
    assert r.json()["storage"] == {
        "stored_bytes": 4000,
        "checkpoint_bytes": 4000,
        "dataset_bytes": 0,
        "quota_bytes": 3000,
        "request_bytes": 0,
        "available_bytes": 0,
    }

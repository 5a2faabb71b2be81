"""A team without its own quota gets the operator's default (issue 28, finding 6):
TRAINFORGE_DEFAULT_STORAGE_QUOTA_BYTES, 20 GiB unless set; 0 turns it off."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.settings import Settings
from tests.api.test_storage_api import CSV, DIGITS, run_to_end, team_and_key

FORM = {"format": "csv", "label_column": "label"}


def _with_default(client: TestClient, settings: Settings, quota: int) -> None:
    client.app.state.settings = settings.model_copy(  # type: ignore[attr-defined]
        update={"default_storage_quota_bytes": quota}
    )


def test_the_default_quota_is_20_gib() -> None:
    assert Settings().default_storage_quota_bytes == 20 * 2**30


def test_a_team_without_a_quota_gets_the_default(client: TestClient, settings: Settings) -> None:
    _, headers = team_and_key(client, "defaulted")
    _with_default(client, settings, 100)
    r = client.post("/v1/datasets", data=FORM, files={"file": ("t.csv", CSV)}, headers=headers)
    assert r.status_code == 507, r.text
    assert "storage quota of 100 bytes" in r.json()["detail"]
    _with_default(client, settings, 0)  # 0: off
    r = client.post("/v1/datasets", data=FORM, files={"file": ("t.csv", CSV)}, headers=headers)
    assert r.status_code == 201, r.text


def test_a_team_at_the_default_quota_cannot_submit_jobs(
    client: TestClient, settings: Settings
) -> None:
    team_id, headers = team_and_key(client, "full-by-default")
    job = client.post("/v1/jobs", json={"spec": DIGITS}, headers=headers).json()
    run_to_end(settings, job["id"], weights=b"w" * 3000, resume=b"r" * 1000)
    _with_default(client, settings, 4000)
    r = client.post("/v1/jobs", json={"spec": DIGITS}, headers=headers)
    assert r.status_code == 507 and "storage quota of 4,000 bytes" in r.json()["detail"]
    client.patch(f"/v1/admin/teams/{team_id}", json={"max_storage_bytes": 10**9})
    own = client.post("/v1/jobs", json={"spec": DIGITS}, headers=headers)
    assert own.status_code == 201, own.text  # the team's own quota wins over the default

"""Quotas with real workers: team A (max_running_jobs 1) runs its jobs one after the
other, while team B's job starts at once on the second worker."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.db.migrate import upgrade
from api.db.session import session_factory
from api.queue import CeleryJobQueue
from api.settings import Settings
from api.teams.models import Team
from api.teams.repository import create_api_key, get_or_create_team
from tests.procs import start_worker, stop, wait_status

pytestmark = pytest.mark.integration

# Long enough (a few seconds on 2 cores) that the runs clearly overlap or not.
SLOW = {
    "dataset": {
        "source": {
            "kind": "builtin",
            "name": "synthetic",
            "synthetic": {"n_samples": 2000, "n_features": 32},
        },
        "batch_size": 16,
        "validation_split": 0.1,
    },
    "model": {"kind": "mlp", "hidden_units": [64]},
    "epochs": 3,
}


@pytest.fixture
def settings(pg_url: str, redis_url: str, tmp_path: Path) -> Settings:
    upgrade(pg_url)
    return Settings(
        home=tmp_path,
        database_url=pg_url,
        broker_url=redis_url,
        queue=f"tf-quota-{secrets.token_hex(4)}",
        heartbeat_seconds=0.5,
    )


@pytest.fixture
def two_workers(settings: Settings, tmp_path: Path) -> Iterator[None]:
    procs = [start_worker(settings, tmp_path / f"w{i}", f"w{i}") for i in range(2)]
    yield
    for p in procs:
        stop(p)


def test_running_quota_serialises_one_team_not_the_other(
    settings: Settings, two_workers: None
) -> None:
    tag = secrets.token_hex(3)
    with session_factory(settings.resolved_database_url)() as s:
        team_a = get_or_create_team(s, f"qa-{tag}")
        team_a.max_running_jobs = 1
        team_b = get_or_create_team(s, f"qb-{tag}")
        _, key_a = create_api_key(s, team_a, "member")
        _, key_b = create_api_key(s, team_b, "member")
        s.commit()
        assert isinstance(team_a, Team)
    app = create_app(settings, queue=CeleryJobQueue(settings))
    with TestClient(app) as client:

        def submit(key: str) -> str:
            r = client.post(
                "/v1/jobs", json={"spec": SLOW}, headers={"Authorization": f"Bearer {key}"}
            )
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        a1, a2 = submit(key_a), submit(key_a)
        b1 = submit(key_b)
        admin_get = lambda url: client.get(url, headers={"Authorization": f"Bearer {key_a}"})  # noqa: E731
        b_get = lambda url: client.get(url, headers={"Authorization": f"Bearer {key_b}"})  # noqa: E731
        first = wait_status(admin_get, a1, {"running", "succeeded"}, 60)
        waiting = admin_get(f"/v1/jobs/{a2}").json()
        if first["status"] == "running":
            assert waiting["status"] == "queued" and waiting["queue_reason"] == "quota"
        jobs = {
            "a1": wait_status(admin_get, a1, {"succeeded"}, 180),
            "a2": wait_status(admin_get, a2, {"succeeded"}, 180),
            "b1": wait_status(b_get, b1, {"succeeded"}, 180),
        }
    t = {
        k: (datetime.fromisoformat(v["started_at"]), datetime.fromisoformat(v["finished_at"]))
        for k, v in jobs.items()
    }
    # Team A never ran two at once: one after the other.
    assert t["a2"][0] >= t["a1"][1] or t["a1"][0] >= t["a2"][1]
    # Team B did not wait for team A's queue: it started while A's first job ran.
    first_a = min(t["a1"], t["a2"])
    assert t["b1"][0] < first_a[1]

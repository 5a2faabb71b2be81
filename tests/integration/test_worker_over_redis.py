"""A job submitted over the API runs in a real `trainforge worker` process over Redis,
with PostgreSQL as the store; a duplicated message runs it once."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from api.db.migrate import upgrade
from api.db.session import session_factory
from api.queue import CeleryJobQueue
from api.settings import Settings
from api.teams.repository import create_api_key, get_or_create_team
from tests.procs import start_worker, stop

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_settings(pg_url: str, redis_url: str, tmp_path: Path) -> Settings:
    upgrade(pg_url)
    return Settings(
        home=tmp_path,
        database_url=pg_url,
        broker_url=redis_url,
        queue=f"tf-test-{secrets.token_hex(4)}",
        heartbeat_seconds=0.5,
    )


@pytest.fixture
def worker_process(pg_settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_worker(pg_settings, tmp_path, "worker")
    yield proc
    stop(proc)


def wait_for(client: TestClient, job_id: str, statuses: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")


def test_job_runs_on_a_real_worker_and_a_duplicate_message_is_a_no_op(
    pg_settings: Settings,
    worker_process: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    with session_factory(pg_settings.resolved_database_url)() as s:
        team = get_or_create_team(s, f"team-{secrets.token_hex(3)}")
        _, key = create_api_key(s, team, "member")
        s.commit()
    queue = CeleryJobQueue(pg_settings)
    app = create_app(pg_settings, queue=queue)
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
        spec = {
            "dataset": {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 16},
            "optimizer": {"kind": "sgd", "lr": 0.1, "momentum": 0.9},
            "epochs": 5,
        }
        job = client.post("/v1/jobs", json={"spec": spec}).json()
        queue.publish(job["id"], pg_settings.queue)  # the broker delivers twice
        try:
            done = wait_for(client, job["id"], {"succeeded", "failed"}, 120)
        except AssertionError:
            print((tmp_path / "worker.log").read_text())  # the worker's side of the story
            raise
        assert done["status"] == "succeeded", done["error"]
        # Wait until the broker has handed out the second copy as well.
        r = redis.Redis.from_url(pg_settings.resolved_broker_url)
        deadline = time.monotonic() + 30
        while r.llen(pg_settings.queue) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)
        again = client.get(f"/v1/jobs/{job['id']}").json()
        assert again["attempt"] == 1
        assert [t["to_status"] for t in again["transitions"]] == ["queued", "running", "succeeded"]
        metrics = client.get(
            f"/v1/jobs/{job['id']}/metrics", params={"name": "val_accuracy"}
        ).json()
        assert len(metrics["series"][0]["points"]) == 5
    assert worker_process.poll() is None

"""The metric/checkpoint/event store on the real PostgreSQL: the same contracts the SQLite
unit tests check (tests/worker/test_metric_sink.py), plus SSE resume and a checkpoint download
through the API, and concurrent writers keeping event ids in commit order."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from safetensors.torch import load as st_load

from api.app import create_app
from api.db.migrate import upgrade
from api.db.session import session_factory
from api.ledger import events
from api.ledger import metrics as metrics_repo
from api.settings import Settings
from api.teams.repository import DEFAULT_TEAM, create_api_key, get_or_create_team
from tests.api.test_checkpoints_api import spec_model
from tests.api.test_events import SPEC as EVENTS_SPEC
from tests.api.test_events import read_stream
from tests.conftest import FakeQueue
from tests.worker import test_metric_sink as contracts
from worker.runner import run_job

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_settings(pg_url: str, tmp_path: Path) -> Settings:
    upgrade(pg_url)
    # A queue of its own: the worker claims the best queued job of its queue.
    return Settings(home=tmp_path, database_url=pg_url, queue=f"tf-{secrets.token_hex(4)}")


@pytest.fixture
def factory(pg_settings: Settings) -> contracts.Factory:
    return session_factory(pg_settings.resolved_database_url)


@pytest.fixture
def pg_client(pg_settings: Settings) -> Iterator[TestClient]:
    with session_factory(pg_settings.resolved_database_url)() as s:
        _, key = create_api_key(s, get_or_create_team(s, DEFAULT_TEAM), "admin")
        s.commit()
    app = create_app(pg_settings, queue=FakeQueue(pg_settings))
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


def test_upserts_are_idempotent(factory: contracts.Factory) -> None:
    contracts.contract_upserts_are_idempotent(factory)


def test_stale_attempts_are_rejected(factory: contracts.Factory) -> None:
    contracts.contract_stale_attempts_are_rejected(factory)


def test_non_finite_values_round_trip(factory: contracts.Factory) -> None:
    contracts.contract_non_finite_values_round_trip(factory)


def test_downsampling_keeps_the_shape(factory: contracts.Factory) -> None:
    # 60,000 points still take both paths: 1,000 points are 250 buckets of 240 rows, M4 in
    # SQL (>= 64 rows a bucket); n / 10 points the Python pass. SQLite's run takes 200,000.
    contracts.contract_downsampling_keeps_the_shape(factory, 60_000)


def test_checkpoints_round_trip_and_retention(factory: contracts.Factory) -> None:
    contracts.contract_checkpoints_round_trip_and_retention(factory)


def test_max_mode_retention(factory: contracts.Factory) -> None:
    contracts.contract_max_mode_retention(factory)


def test_sse_resume_and_checkpoint_download_over_the_api(
    pg_client: TestClient, pg_settings: Settings
) -> None:
    r = pg_client.post("/v1/jobs", json={"spec": EVENTS_SPEC})
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    run_job(job_id, pg_settings)
    url = f"/v1/jobs/{job_id}/events"
    full = read_stream(pg_client, url)
    assert [e.event for e in full][-2:] == ["status", "end"]
    assert {"metrics", "checkpoint"} <= {e.event for e in full}
    cut = len(full) // 2
    resumed = read_stream(pg_client, url, headers={"Last-Event-ID": str(full[cut - 1].id)})
    assert [(e.id, e.data) for e in resumed] == [(e.id, e.data) for e in full[cut:]]

    items = pg_client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"]
    latest = items[-1]
    body = pg_client.get(f"/v1/jobs/{job_id}/checkpoints/{latest['id']}/download").content
    assert len(body) == latest["size_bytes"]
    spec_model(EVENTS_SPEC).load_state_dict(st_load(body))


def test_concurrent_writers_get_event_ids_in_commit_order(factory: contracts.Factory) -> None:
    """Two writers of one job (metrics and checkpoints, as a worker's two paths) race;
    a reader paging by id after every commit never skips an event."""
    job_id = contracts.running_job(factory)
    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        cursor = 0
        while not stop.is_set() or cursor < last_id():
            with factory() as s:
                page = events.events_after(s, job_id, cursor, 1000)
            for e in page:
                seen.append(e.id)
                cursor = e.id

    def last_id() -> int:
        with factory() as s:
            page = events.events_after(s, job_id, 0, 100_000)
            return page[-1].id if page else 0

    def metrics(offset: int) -> None:
        for i in range(150):
            with factory() as s:
                metrics_repo.write_metrics(
                    s, job_id, 1, [metrics_repo.Point("loss", offset + i, 0, 1.0)]
                )
                s.commit()

    threads = [threading.Thread(target=metrics, args=(k * 1000,)) for k in range(3)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join(timeout=60)
    with factory() as s:
        every = [e.id for e in events.events_after(s, job_id, 0, 100_000)]
    assert seen == every  # nothing skipped, nothing twice

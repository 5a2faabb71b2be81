from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.db.migrate import upgrade
from api.db.session import session_factory
from api.queue import CeleryJobQueue
from api.settings import Settings
from api.teams.repository import create_api_key, get_or_create_team
from tests.faults.cluster import Cluster


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The uninterrupted references trained in this process use one intra-op thread, as
    the workers do (TRAINFORGE_TORCH_THREADS=1): beside the server tier, two threads
    spin-waiting for a core cost ~2x the CPU for the same numbers."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cluster(pg_url: str, redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    upgrade(pg_url)
    # Short leases and a fast reconciler, so each fault resolves in seconds.
    settings = Settings(
        home=tmp_path,
        database_url=pg_url,
        broker_url=redis_url,
        queue=f"tf-fault-{secrets.token_hex(4)}",
        heartbeat_seconds=0.5,
        lease_seconds=4,
        reconcile_seconds=1,
        republish_after_seconds=4,
        # A worker paused inside a transaction loses its session (and locks) this fast.
        db_idle_in_transaction_seconds=3,
        stalled_lock_seconds=3,
    )
    with session_factory(pg_url)() as s:
        team = get_or_create_team(s, f"faults-{secrets.token_hex(3)}")
        _, key = create_api_key(s, team, "member")
        s.commit()
    # The API here is the test's observer, in this pytest process: its sessions keep the
    # service's default (30 s), so a request starved of CPU for a few seconds (the fault
    # tests run beside the server tier) is not cut off as if it were a frozen worker.
    observer = settings.model_copy(update={"db_idle_in_transaction_seconds": 30})
    app = create_app(observer, queue=CeleryJobQueue(observer))
    with TestClient(app) as client:
        c = Cluster(settings=settings, client=client, key=key, home=tmp_path)
        try:
            yield c
        finally:
            c.stop_all()

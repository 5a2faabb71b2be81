"""A job needing N devices gets N of one pool at once or none (issue 27, scheduling).

The claim reserves a job's devices in its own UPDATE, under the pool's lock; the
reservation ends when the job leaves ``running`` (its end, a lost worker's takeover,
a hand-back on shutdown). Quotas and fair share count devices.
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text, update
from sqlalchemy.orm import Session, sessionmaker

import api.webhooks.repository  # noqa: F401  (wires the outbox to status changes)
from api.db.migrate import upgrade
from api.db.models import utcnow
from api.db.session import session_factory
from api.ledger import devices, lifecycle, scheduling, workers
from api.ledger import repository as repo
from api.ledger.devices import Pool
from api.ledger.models import Job
from api.settings import Settings
from api.teams.models import Team
from api.teams.repository import get_or_create_team
from ml.spec import SPEC_VERSION
from worker.attempt import Outcome
from worker.metric_sink import with_db_retry

LEASE = 30.0


def _job(s: Session, team: str, queue: str, n_devices: int, priority: int = 0) -> str:
    spec: dict[str, Any] = {
        "dataset": {"source": {"kind": "builtin", "name": "iris"}},
        "resources": {"devices": n_devices},
        "epochs": 1,
    }
    team_id = get_or_create_team(s, team).id
    job = repo.create_job(
        s,
        team_id=team_id,
        key_id=None,
        name=None,
        spec=spec,
        spec_version=SPEC_VERSION,
        queue=queue,
        epochs=1,
        max_restarts=3,
        priority=priority,
    )
    return job.id


def _claim(factory: sessionmaker[Session], queue: str, pool: Pool) -> scheduling.Claimed | None:
    with factory() as s:
        claimed = scheduling.claim_next(s, queue, LEASE, pool)
        s.commit()
    return claimed


def _names() -> tuple[str, str, str]:
    tag = secrets.token_hex(4)
    return f"q-{tag}", f"team-{tag}", f"pool-{tag}"


def _sqlite(settings: Settings) -> sessionmaker[Session]:
    return session_factory(settings.resolved_database_url)


# ------------------------------------------------- all or nothing, and released again


def _two_jobs_of_two_on_three(factory: sessionmaker[Session]) -> None:
    queue, team, name = _names()
    pool = Pool(name, 3)
    with factory() as s:
        first, second = _job(s, team, queue, 2), _job(s, team, queue, 2)
        s.commit()
    a = _claim(factory, queue, pool)
    assert a is not None and a.job_id == first and a.device_ids == [0, 1]
    assert _claim(factory, queue, pool) is None  # 1 device left: no partial allocation
    with factory() as s:
        assert devices.free_devices(s, pool) == [2]
        assert s.get(Job, second).status == "queued"  # type: ignore[union-attr]
        repo.finish_job(s, first, a.attempt, status="succeeded", reason="completed")
        s.commit()
    b = _claim(factory, queue, pool)
    assert b is not None and b.job_id == second and b.device_ids == [0, 1]


def test_two_jobs_of_two_devices_on_a_three_device_pool_sqlite(settings: Settings) -> None:
    _two_jobs_of_two_on_three(_sqlite(settings))


def test_two_jobs_of_two_devices_on_a_three_device_pool_postgresql(pg_url: str) -> None:
    upgrade(pg_url)
    _two_jobs_of_two_on_three(session_factory(pg_url))


def test_concurrent_claims_on_postgresql_queue_up_on_the_pool_and_never_deadlock(
    pg_url: str,
) -> None:
    """Claim B starts while claim A holds the pool (uncommitted): B waits on the pool's
    row lock -- seen in pg_stat_activity -- then reads A's reservation and takes nothing.
    No deadlock error, no partial allocation."""
    upgrade(pg_url)
    factory = session_factory(pg_url)
    queue, team, name = _names()
    pool = Pool(name, 3)
    with factory() as s:
        _job(s, team, queue, 2)
        _job(s, f"{team}-b", queue, 2)  # another team: B would take it if it could
        s.commit()
    holder = factory()
    a = scheduling.claim_next(holder, queue, LEASE, pool)  # A: holds the pool, not committed
    assert a is not None and a.device_ids == [0, 1]
    b_result: list[scheduling.Claimed | BaseException | None] = []

    def claim_b() -> None:
        try:
            b_result.append(_claim(factory, queue, pool))
        except BaseException as exc:  # noqa: BLE001 - reported below
            b_result.append(exc)

    thread = threading.Thread(target=claim_b)
    thread.start()
    with factory() as watcher:  # B is blocked on a lock (A's pool row), not finished
        for _ in range(500):
            waiting = watcher.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            )
            if waiting or b_result:
                break
            time.sleep(0.01)
    assert not b_result, "claim B did not wait for claim A's pool lock"
    holder.commit()
    holder.close()
    thread.join(timeout=30)
    assert b_result == [None]  # 1 device free after A's commit: B took nothing


def _race(factory: sessionmaker[Session]) -> None:
    """Two workers of one 3-device pool take two doorbells at the same moment."""
    queue, team, name = _names()
    pool = Pool(name, 3)
    with factory() as s:
        _job(s, team, queue, 2)
        _job(s, f"{team}-b", queue, 2)
        s.commit()
    start = threading.Barrier(2)
    results: list[scheduling.Claimed | None] = []

    def worker() -> None:
        start.wait()
        results.append(with_db_retry(factory, lambda s: scheduling.claim_next(s, queue, 30, pool)))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    claimed = [r for r in results if r is not None]
    assert len(results) == 2 and len(claimed) == 1, results  # both answered, one got devices
    assert claimed[0].device_ids == [0, 1]
    with factory() as s:
        assert devices.free_devices(s, pool) == [2]


def test_simultaneous_claims_on_one_pool_sqlite(settings: Settings) -> None:
    _race(_sqlite(settings))


def test_simultaneous_claims_on_one_pool_postgresql(pg_url: str) -> None:
    upgrade(pg_url)
    _race(session_factory(pg_url))


@pytest.mark.parametrize("how", ["finished", "worker_lost", "handed_back"])
def test_devices_are_released_when_the_job_leaves_running(settings: Settings, how: str) -> None:
    factory = _sqlite(settings)
    queue, team, name = _names()
    pool = Pool(name, 2)
    with factory() as s:
        job_id = _job(s, team, queue, 2)
        s.commit()
    claimed = _claim(factory, queue, pool)
    assert claimed is not None and claimed.device_ids == [0, 1]
    with factory() as s:
        assert devices.free_devices(s, pool) == []
        if how == "finished":
            repo.finish_job(s, job_id, claimed.attempt, status="failed", reason="error")
        elif how == "handed_back":
            repo.hand_back(s, job_id, claimed.attempt, "worker_shutdown")
        else:  # the lease ran out: the reconciler requeues it
            past = utcnow() - timedelta(seconds=1)
            s.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=past))
            lifecycle.reconcile(s, utcnow(), timedelta(hours=1))
        s.commit()
        assert devices.free_devices(s, pool) == [0, 1]


def test_a_pool_passes_over_a_job_too_big_for_it_and_runs_one_that_fits(
    settings: Settings,
) -> None:
    factory = _sqlite(settings)
    queue, team, name = _names()
    with factory() as s:
        big = _job(s, team, queue, 4, priority=9)
        small = _job(s, f"{team}-2", queue, 1)
        s.commit()
    claimed = _claim(factory, queue, Pool(name, 2))
    assert claimed is not None and claimed.job_id == small and claimed.device_ids == [0]
    with factory() as s:
        assert s.get(Job, big).status == "queued"  # type: ignore[union-attr]


# ------------------------------------------------------ quotas and fair share count devices


def test_a_two_device_job_counts_two_against_max_running_jobs(settings: Settings) -> None:
    factory = _sqlite(settings)
    queue, team, name = _names()
    with factory() as s:
        first = _job(s, team, queue, 2)
        s.execute(update(Team).where(Team.name == team).values(max_running_jobs=2))
        s.commit()
    claimed = _claim(factory, queue, Pool(name, 8))
    assert claimed is not None and claimed.job_id == first
    with factory() as s:
        team_id = s.get(Job, first).team_id  # type: ignore[union-attr]
        _job(s, team, queue, 1)
        s.commit()
        assert scheduling.team_room(s, team_id) == 0
    assert _claim(factory, queue, Pool(name, 8)) is None  # 2 of 2 devices in use


def test_fair_share_goes_to_the_team_holding_fewer_devices(settings: Settings) -> None:
    """Team A runs one 2-device job, team B one 1-device job (B served last): the next
    free device goes to B, which holds fewer."""
    factory = _sqlite(settings)
    queue, team, name = _names()
    pool = Pool(name, 8)
    with factory() as s:
        _job(s, f"{team}-a", queue, 2)
        s.commit()
    assert _claim(factory, queue, pool) is not None
    with factory() as s:
        _job(s, f"{team}-b", queue, 1)
        s.commit()
    assert _claim(factory, queue, pool) is not None  # B is served after A
    with factory() as s:
        next_a, next_b = _job(s, f"{team}-a", queue, 1), _job(s, f"{team}-b", queue, 1)
        s.commit()
        assert scheduling.pick_order(s, queue) == [next_b, next_a]


# ------------------------------------------------------------------ advertised devices


def test_a_worker_row_carries_its_devices_and_pool(settings: Settings) -> None:
    factory = _sqlite(settings)
    queue, _, name = _names()
    with factory() as s:
        workers.beat(s, "w-1", queue, devices=3, device_pool=name)
        workers.beat(s, "w-2", f"{queue},other", devices=2)
        s.commit()
        assert workers.largest_alive(s, queue) == 3
        assert workers.largest_alive(s, "other") == 2
        assert workers.largest_alive(s, "nobody") == 0
        view = devices.pools(s, {name, "w-2"})
        assert (view[name].devices, view[name].free) == (3, [0, 1, 2])
        assert view["w-2"].devices == 2  # no pool named: a pool of its own


# ------------------------------------------------------------------ through the runner


def test_the_runner_claims_the_devices_and_hands_them_to_the_attempt(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_job reserves the job's devices of the worker's pool and passes ``device_ids``
    to the attempt (what the data-parallel engine is given); they are free once it ended."""
    from api.joblogs.repository import lines_after
    from worker import runner

    factory = _sqlite(settings)
    with factory() as s:
        busy = _job(s, "other", settings.queue, 1)
        s.commit()
    pool = Pool("host-x", 3)
    assert _claim(factory, settings.queue, pool) is not None  # device 0 is busy elsewhere
    with factory() as s:
        job_id = _job(s, "team-x", settings.queue, 2)
        s.commit()
    seen: list[list[int] | None] = []

    def train(run: Any) -> Any:  # what the engine is given; no training needed here
        seen.append(run.device_ids)
        return Outcome("succeeded", "completed")

    monkeypatch.setattr(runner, "_train", train)
    said = runner.run_job(job_id, settings, pool)
    assert "succeeded" in said and seen == [[1, 2]]
    with factory() as s:
        job = s.get(Job, job_id)
        assert job is not None and (job.device_pool, job.device_ids) == ("host-x", [1, 2])
        log = [line.message for line in lines_after(s, job_id, 0, 100)]
        assert any("(devices [1, 2] of pool host-x)" in line for line in log), log
        assert devices.free_devices(s, pool) == [1, 2]  # only `busy` holds one now
        assert devices.reserved(s, "host-x") == {0: busy}


def test_what_a_worker_offers(settings: Settings) -> None:
    from worker.devices import device_count, pool_for

    assert device_count(settings, cuda_devices=4) == 4  # the GPUs it sees
    assert device_count(settings, cuda_devices=0) >= 1  # its cores, on a CPU host
    configured = Settings(home=settings.home, worker_devices=3, device_pool="host-a")
    assert device_count(configured, cuda_devices=8) == 3  # TRAINFORGE_WORKER_DEVICES wins
    assert pool_for(configured, cuda_devices=0) == Pool("host-a", 3)
    assert pool_for(settings, cuda_devices=2).name != "host-a"  # a pool of its own

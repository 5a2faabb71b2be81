"""A process stalled inside a transaction (SIGSTOP, a VM pause) must not hold its row
locks for ever: the reconciler's takeover and a user's cancel need them. PostgreSQL
ends such a session after ``db_idle_in_transaction_seconds``."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.db.migrate import upgrade
from api.db.models import utcnow
from api.db.session import session_factory
from api.ledger import lifecycle
from api.ledger.models import Job
from api.settings import Settings
from api.teams.models import Team
from api.teams.repository import DEFAULT_TEAM, create_api_key, get_or_create_team
from tests.conftest import FakeQueue
from tests.worker.helpers import insert_job

pytestmark = pytest.mark.integration


def _lock_then_stall(factory: sessionmaker[Session], team_id: str) -> Session:
    stalled = factory()
    stalled.execute(update(Team).where(Team.id == team_id).values(name="stalled"))
    return stalled  # inside its transaction, holding the row lock, doing nothing


def _other_writer_gets_through(pg_url: str, team_id: str) -> bool:
    with session_factory(pg_url)() as other:
        other.execute(text("SET LOCAL lock_timeout = '4s'"))
        try:
            other.execute(update(Team).where(Team.id == team_id).values(name="other"))
        except DBAPIError:
            return False
        other.commit()
        return True


@pytest.mark.parametrize("timeout", [1.0, None], ids=["timeout", "no-timeout"])
def test_a_stalled_transaction_releases_its_locks(pg_url: str, timeout: float | None) -> None:
    upgrade(pg_url)
    with session_factory(pg_url)() as s:
        team_id = get_or_create_team(s, f"stall-{timeout}").id
        s.commit()
    stalled = _lock_then_stall(session_factory(pg_url, timeout), team_id)
    try:
        time.sleep(0.2)
        got_through = _other_writer_gets_through(pg_url, team_id)
        if timeout is None:  # the control: without the setting the lock stays held
            assert not got_through
            return
        assert got_through
        # The stalled session was ended: its late commit fails instead of landing.
        with pytest.raises(DBAPIError):
            stalled.commit()
    finally:
        stalled.rollback()
        stalled.close()
    with session_factory(pg_url)() as s:
        assert s.get(Team, team_id).name == "other"  # type: ignore[union-attr]


def _running_job(factory: sessionmaker[Session], lease: timedelta) -> str:
    with factory() as s:
        job_id = insert_job(s, {"dataset": {"source": {"kind": "builtin", "name": "iris"}}})
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status="running", attempt=1, lease_expires_at=utcnow() + lease)
        )
        s.commit()
    return job_id


def test_the_reconciler_ends_a_session_frozen_on_an_expired_jobs_row(pg_url: str) -> None:
    upgrade(pg_url)
    factory = session_factory(pg_url)
    expired = _running_job(factory, timedelta(seconds=-5))
    alive = _running_job(factory, timedelta(minutes=5))
    frozen, busy = factory(), factory()
    frozen.execute(update(Job).where(Job.id == expired).values(progress_step=7))
    busy.execute(update(Job).where(Job.id == alive).values(progress_step=7))
    try:
        frozen_pid = frozen.execute(text("SELECT pg_backend_pid()")).scalar()
        with factory() as s:  # not yet held long enough
            assert lifecycle.stalled_lock_holders(s, utcnow(), 30) == []
        time.sleep(1.2)
        with factory() as s:
            # Only the holder of the expired job's row, not the live job's writer.
            assert lifecycle.end_stalled_sessions(s, utcnow(), 1.0) == [frozen_pid]
        with pytest.raises(DBAPIError):  # its transaction is gone, and its write with it
            frozen.commit()
        busy.commit()
    finally:
        for s in (frozen, busy):
            s.rollback()
            s.close()
    with factory() as s:
        # The takeover now gets the row at once, and the frozen write never landed.
        s.execute(text("SET LOCAL lock_timeout = '1s'"))
        requeued = lifecycle.reconcile(s, utcnow(), timedelta(minutes=5))
        s.commit()
        # (The session's database holds other tests' jobs too: only ours are judged.)
        assert [p.job_id for p in requeued if p.job_id in (expired, alive)] == [expired]
        assert s.get(Job, expired).progress_step != 7  # type: ignore[union-attr]
        assert s.get(Job, alive).progress_step == 7  # type: ignore[union-attr]


def test_the_api_answers_503_behind_a_held_row_lock_not_a_hung_request(
    pg_url: str, tmp_path: Path
) -> None:
    upgrade(pg_url)
    settings = Settings(home=tmp_path, database_url=pg_url, api_lock_timeout_seconds=0.5)
    factory = session_factory(pg_url)
    with factory() as s:
        _, key = create_api_key(s, get_or_create_team(s, DEFAULT_TEAM), "admin")
        s.commit()
    job_id = _running_job(factory, timedelta(minutes=5))
    frozen = factory()
    frozen.execute(update(Job).where(Job.id == job_id).values(progress_step=7))
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(settings, queue=FakeQueue(settings))) as client:
        try:
            started = time.monotonic()
            r = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
            assert r.status_code == 503 and r.headers["retry-after"], r.text
            assert "locked" in r.json()["detail"]
            # Bounded by the lock timeout (0.5 s); the margin is a starved CI host's.
            assert time.monotonic() - started < 30
            assert client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 200  # reads go on
        finally:
            frozen.rollback()
            frozen.close()
        r = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
        assert r.status_code == 200 and r.json()["cancel_requested"], r.text


def test_a_reconcile_pass_skips_a_held_row_and_handles_the_rest(pg_url: str) -> None:
    upgrade(pg_url)
    factory = session_factory(pg_url)
    held = _running_job(factory, timedelta(seconds=-5))
    free = _running_job(factory, timedelta(seconds=-5))
    frozen = factory()
    frozen.execute(update(Job).where(Job.id == held).values(progress_step=7))
    try:
        started = time.monotonic()
        with factory() as s:
            # A wait on the held row would fail past this, and take at least this long:
            # the bound below tells the two apart with a starved CI host's margin.
            s.execute(text("SET LOCAL lock_timeout = '20s'"))
            requeued = {p.job_id for p in lifecycle.reconcile(s, utcnow(), timedelta(minutes=5))}
            s.commit()
        assert time.monotonic() - started < 15  # no wait on the held row
        assert free in requeued and held not in requeued
    finally:
        frozen.rollback()
        frozen.close()
    with factory() as s:  # the next pass gets it
        requeued = {p.job_id for p in lifecycle.reconcile(s, utcnow(), timedelta(minutes=5))}
        s.commit()
    assert held in requeued

"""A lost doorbell costs seconds, not minutes; a worker with a bad database takes no
message (issue 28, finding 12)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from api.db.migrate import upgrade
from api.db.models import utcnow
from api.db.session import session_factory
from api.ledger.models import Job
from api.settings import Settings
from tests.conftest import FakeQueue
from tests.worker.helpers import insert_job
from worker.idle_doorbell import IdleDoorbell, database_problem

SPEC = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 1}


def _queued(settings: Settings, waited_seconds: float) -> str:
    with session_factory(settings.resolved_database_url)() as s:
        job_id = insert_job(s, SPEC)
        since = utcnow() - timedelta(seconds=waited_seconds)
        s.execute(update(Job).where(Job.id == job_id).values(updated_at=since))
        s.commit()
    return job_id


def test_an_idle_worker_rings_for_a_job_whose_message_was_lost(settings: Settings) -> None:
    queue = FakeQueue(settings)
    bell = IdleDoorbell(settings, [settings.queue], queue, busy=lambda: False)
    lost = _queued(settings, waited_seconds=settings.idle_claim_seconds + 1)
    assert bell.ring_once() == [lost]
    assert queue.published == [(lost, settings.queue)]
    assert bell.ring_once() == []  # its doorbell is on its way: not rung again at once


def test_a_fresh_job_or_a_busy_worker_rings_nothing(settings: Settings) -> None:
    queue = FakeQueue(settings)
    _queued(settings, waited_seconds=0)  # its own message is still on its way
    assert IdleDoorbell(settings, [settings.queue], queue, busy=lambda: False).ring_once() == []
    _queued(settings, waited_seconds=60)
    assert IdleDoorbell(settings, [settings.queue], queue, busy=lambda: True).ring_once() == []
    assert IdleDoorbell(settings, ["another-queue"], queue, busy=lambda: False).ring_once() == []
    assert queue.published == []


def test_a_worker_says_why_its_database_is_not_usable(settings: Settings, tmp_path: Path) -> None:
    assert database_problem(settings) is None  # migrated to head by the fixture
    old = Settings(home=tmp_path / "old")
    old.ensure_home()
    upgrade(old.resolved_database_url, "3295140b53bf")
    problem = database_problem(old)
    assert problem and "3295140b53bf" in problem and "trainforge db upgrade" in problem
    away = Settings(home=tmp_path / "away", database_url="postgresql://u:p@127.0.0.1:1/none")
    problem = database_problem(away)
    assert problem and problem.startswith("the database is unreachable")

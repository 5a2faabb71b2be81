"""``max_queued_jobs`` holds under concurrent submissions (issue 18, item 7).

Thirty submissions start at once (a barrier), each in its own session and
transaction exactly as a request runs them (validate, quota, insert, commit).
With a quota of 10, exactly 10 jobs exist afterwards and the other 20 were
told 429, on the real PostgreSQL and on SQLite.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api.db.migrate import upgrade
from api.db.session import session_factory
from api.jobs import service as jobs_service
from api.jobs.schemas import JobCreate
from api.ledger.models import Job
from api.problems import ProblemError
from api.settings import Settings
from api.teams.repository import Principal, create_api_key, get_or_create_team

SUBMISSIONS = 30
QUOTA = 10
SPEC = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 1}


def _race(settings: Settings) -> tuple[int, list[int]]:
    url = settings.resolved_database_url
    factory = session_factory(url, lock_timeout_seconds=settings.api_lock_timeout_seconds)
    with factory() as s:
        team = get_or_create_team(s, f"quota-race-{secrets.token_hex(3)}")
        team.max_queued_jobs = QUOTA
        key, _ = create_api_key(s, team, "member")
        s.commit()
        principal = Principal(key_id=key.id, team_id=team.id, role="member")
    body = JobCreate.model_validate({"spec": SPEC})
    barrier = threading.Barrier(SUBMISSIONS)
    answers: list[int] = []
    lock = threading.Lock()

    def submit() -> None:
        with factory() as session:
            barrier.wait()
            try:
                jobs_service.create_job(session, settings, principal, body)
                session.commit()
                code = 201
            except ProblemError as exc:
                session.rollback()
                code = exc.status
        with lock:
            answers.append(code)

    threads = [threading.Thread(target=submit) for _ in range(SUBMISSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with factory() as s:
        created = s.scalar(select(func.count()).select_from(Job).where(Job.team_id == team.id))
    return int(created or 0), answers


def _assert_held(created: int, answers: list[int]) -> None:
    assert created == QUOTA, f"{created} jobs queued with max_queued_jobs={QUOTA}"
    assert sorted(answers) == [201] * QUOTA + [429] * (SUBMISSIONS - QUOTA)


@pytest.mark.integration
def test_max_queued_jobs_is_atomic_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    upgrade(pg_url)
    settings = Settings(home=tmp_path, database_url=pg_url)
    _assert_held(*_race(settings))


def test_max_queued_jobs_is_atomic_on_sqlite(settings: Settings) -> None:
    _assert_held(*_race(settings))

"""The warm-start dependents query (a JSON path into jobs.spec) on the real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from api.checkpoints.warm_start_pins import dependent_jobs, pinned_checkpoint_ids
from api.db.migrate import upgrade
from api.db.session import session_factory
from api.ledger import repository as repo
from api.teams.repository import get_or_create_team

pytestmark = pytest.mark.integration


def _job(session: Session, team_id: str, spec: dict[str, object]) -> str:
    job = repo.create_job(session, team_id=team_id, key_id=None, name=None, spec=spec,
                          spec_version="1", queue="q", epochs=1, max_restarts=0)  # fmt: skip
    session.flush()
    return job.id


def test_dependents_are_found_by_their_warm_start_source(pg_url: str) -> None:
    upgrade(pg_url)
    with session_factory(pg_url)() as s:
        team = get_or_create_team(s, "pins")
        source = _job(s, team.id, {"epochs": 1})
        by_id = _job(s, team.id, {"warm_start": {"job_id": source, "checkpoint": 7}})
        best = _job(s, team.id, {"warm_start": {"job_id": source, "checkpoint": "best"}})
        _job(s, team.id, {"warm_start": {"job_id": "another", "checkpoint": 9}})
        s.commit()
        assert {j.id for j in dependent_jobs(s, source)} == {by_id, best}
        assert pinned_checkpoint_ids(s, source) == {7}


def test_a_running_sweep_pins_its_source_checkpoint(pg_url: str) -> None:
    from api.checkpoints.warm_start_pins import dependent_sweeps
    from api.sweeps.models import Sweep

    upgrade(pg_url)
    with session_factory(pg_url)() as s:
        team = get_or_create_team(s, "sweep-pins")
        source = _job(s, team.id, {"epochs": 1})
        for status, checkpoint in (("running", 11), ("succeeded", 12)):
            spec = {"warm_start": {"job_id": source, "checkpoint": checkpoint}}
            s.add(Sweep(team_id=team.id, status=status, parameters={}, algorithm={},
                        objective={}, early_termination={}, max_trials=1,
                        max_concurrent_trials=1, queues={}, spec=spec))  # fmt: skip
        s.commit()
        assert [c for _, c in dependent_sweeps(s, source)] == [11]
        assert pinned_checkpoint_ids(s, source) == {11}

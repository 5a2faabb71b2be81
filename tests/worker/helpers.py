"""A job row as the API would store it, for tests that drive the worker directly."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.ledger import repository as repo
from api.teams.repository import DEFAULT_TEAM, get_or_create_team
from ml.spec import SPEC_VERSION, JobSpec


def insert_job(session: Session, spec: dict[str, object]) -> str:
    resolved = JobSpec.model_validate(spec)
    team = get_or_create_team(session, DEFAULT_TEAM)
    job = repo.create_job(
        session,
        team_id=team.id,
        key_id=None,
        name=None,
        spec=resolved.model_dump(mode="json"),
        spec_version=SPEC_VERSION,
        queue="trainforge",
        epochs=resolved.epochs,
        max_restarts=resolved.retry.max_restarts,
    )
    session.flush()
    return job.id

"""Which jobs a caller sees: its team's, or every team's with an admin key; another team's
job is a 404."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.ledger import repository as repo
from api.ledger.models import Job
from api.problems import ProblemError
from api.teams.repository import Principal


def team_scope(principal: Principal) -> str | None:
    """The team whose resources the caller may see; None for admins, who see every team."""
    return None if principal.is_admin else principal.team_id


def get_job_or_404(session: Session, principal: Principal, job_id: str) -> Job:
    job = repo.get_job(session, job_id, team_scope(principal))
    if job is None:
        raise ProblemError(404, "Not found", f"No job {job_id!r}.")
    return job

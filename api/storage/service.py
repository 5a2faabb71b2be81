"""Storage service: delete an ended job, a team's storage figure.

(The quota is checked where bytes are written: dataset uploads, api/datasets/service.py,
507; checkpoints, worker/checkpoint_sink.py, which fails the job.)
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.checkpoints.warm_start_pins import dependent_jobs, dependent_sweeps
from api.ledger.access import get_job_or_404
from api.problems import ProblemError
from api.storage import repository as repo
from api.storage.schemas import TeamDetail, TeamStorage
from api.teams.models import Team
from api.teams.repository import Principal
from api.teams.schemas import TeamRead


def delete_job(session: Session, principal: Principal, job_id: str) -> None:
    """Remove an ended job and all it stored, in the caller's transaction; 404 for a job
    the caller cannot see, 409 for one that is queued or running."""
    job = get_job_or_404(session, principal, job_id)
    waiting = dependent_jobs(session, job.id)
    if waiting:
        raise ProblemError(
            409,
            "Conflict",
            f"Job {waiting[0].id!r} ({waiting[0].status}) warm-starts from this job's "
            f"checkpoint ({len(waiting)} job(s) in all): delete this job once they have "
            "started training, or cancel them first.",
        )
    sweeps = dependent_sweeps(session, job.id)
    if sweeps:
        raise ProblemError(
            409,
            "Conflict",
            f"Sweep {sweeps[0][0]!r} (running) warm-starts its trials from this job's "
            "checkpoint: delete this job once the sweep has ended, or cancel the sweep first.",
        )
    if not repo.delete_ended_job(session, job.id):
        session.refresh(job)
        raise ProblemError(
            409,
            "Conflict",
            f"The job is {job.status}; only a succeeded, failed or canceled job can be "
            "deleted. Cancel it first (POST /v1/jobs/{id}/cancel).",
        )


def team_detail(session: Session, team_id: str) -> TeamDetail:
    team = session.get(Team, team_id)
    if team is None:
        raise ProblemError(404, "Not found", f"No team {team_id!r}.")
    used = repo.usage(session, team.id)
    storage = TeamStorage(
        checkpoint_bytes=used.checkpoint_bytes,
        dataset_bytes=used.dataset_bytes,
        total_bytes=used.total_bytes,
        max_storage_bytes=team.max_storage_bytes,
    )
    read = TeamRead.model_validate(team, from_attributes=True)
    return TeamDetail(**read.model_dump(), storage=storage)

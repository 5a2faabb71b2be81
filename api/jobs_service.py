"""Jobs: the service between thin endpoints and the repository."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from sqlalchemy.orm import Session

from api.db import jobs as repo
from api.db.keys import Principal
from api.db.models import Job
from api.problems import ProblemError
from api.schemas import JobCreate, JobPage, JobProgress, JobRead, JobTransitionRead, spec_json
from api.settings import Settings
from api.spec_service import validate_spec
from ml.spec import SPEC_VERSION, JobSpec


def team_scope(principal: Principal) -> str:
    # Admins act within their own team here; cross-team views come with the teams issue.
    return principal.team_id


def create_job(session: Session, settings: Settings, principal: Principal, body: JobCreate) -> Job:
    validate_spec(body.spec)
    queue = settings.gpu_queue if body.spec.resources.device == "cuda" else settings.queue
    return repo.create_job(
        session,
        team_id=team_scope(principal),
        key_id=principal.key_id,
        name=body.name,
        spec=spec_json(body.spec),
        spec_version=SPEC_VERSION,
        queue=queue,
        epochs=body.spec.epochs,
        max_restarts=body.spec.retry.max_restarts,
        priority=body.priority,
    )


def get_job_or_404(session: Session, principal: Principal, job_id: str) -> Job:
    job = repo.get_job(session, job_id, team_scope(principal))
    if job is None:
        raise ProblemError(404, "Not found", f"No job {job_id!r}.")
    return job


def to_read(session: Session, job: Job) -> JobRead:
    return JobRead(
        id=job.id,
        name=job.name,
        status=job.status,
        status_reason=job.status_reason,
        error=job.error,
        spec=JobSpec.model_validate(job.spec),
        spec_version=job.spec_version,
        priority=job.priority,
        attempt=job.attempt,
        cancel_requested=job.cancel_requested,
        progress=JobProgress(epoch=job.progress_epoch, epochs=job.epochs, step=job.progress_step),
        stopped_epoch=job.stopped_epoch,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        transitions=[
            JobTransitionRead(
                from_status=t.from_status,
                to_status=t.to_status,
                reason=t.reason,
                attempt=t.attempt,
                at=t.at,
            )
            for t in repo.transitions(session, job.id)
        ],
    )


def encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|", 1)
        return datetime.fromisoformat(created), job_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ProblemError(400, "Bad request", "Malformed cursor.") from exc


def list_page(
    session: Session,
    principal: Principal,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> JobPage:
    after = decode_cursor(cursor) if cursor else None
    rows = repo.list_jobs(
        session, team_scope(principal), status=status, limit=limit + 1, after=after
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return JobPage(
        items=[to_read(session, j) for j in rows],
        next_cursor=encode_cursor(rows[-1]) if more and rows else None,
    )

"""Which checkpoints queued or running jobs warm-start from (``spec.warm_start``, issue 24).

No table: the dependents are read from the jobs' specs. A job that has not started yet
still needs its source, so while it is queued or running the source job cannot be
deleted (``api.storage``), and a checkpoint it names by id survives the source's
retention (``api.db.checkpoints.apply_retention``). ``best`` and ``latest`` are
resolved when the job starts.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import Job

WAITING = ("queued", "running")


def dependent_jobs(session: Session, source_job_id: str) -> list[Job]:
    """Queued or running jobs that warm-start from ``source_job_id``."""
    source = Job.spec["warm_start"]["job_id"].as_string()
    stmt = select(Job).where(Job.status.in_(WAITING), source == source_job_id)
    return list(session.scalars(stmt.order_by(Job.created_at)))


def pinned_checkpoint_ids(session: Session, source_job_id: str) -> set[int]:
    """The checkpoint ids (of ``source_job_id``) that waiting jobs name explicitly."""
    pinned = set()
    for job in dependent_jobs(session, source_job_id):
        checkpoint = (job.spec.get("warm_start") or {}).get("checkpoint")
        if isinstance(checkpoint, int) and not isinstance(checkpoint, bool):
            pinned.add(checkpoint)
    return pinned

"""Which checkpoints queued or running jobs (and running sweeps) warm-start from
(``spec.warm_start``, issue 24).

No table: the dependents are read from the jobs' and sweeps' specs. A submitted job's
(or sweep's) spec names its source checkpoint by id -- ``best`` and ``latest`` are
resolved at submit (``api.checkpoints.warm_start``) -- so while a dependent waits, that checkpoint
survives the source's retention (``api.checkpoints.repository.apply_retention``) and the source
job cannot be deleted (``api.storage``: a 409 naming the dependent). Its bytes stay the
source job's, counted once in the team's storage quota.
"""

from __future__ import annotations

from sqlalchemy import JSON, String, column, select, table
from sqlalchemy.orm import Session

from api.ledger.models import Job

WAITING = ("queued", "running")
# The sweeps table, named here without its domain package (api.sweeps sits above the kernel).
_sweeps = table("sweeps", column("id", String), column("status", String), column("spec", JSON))


def dependent_jobs(session: Session, source_job_id: str) -> list[Job]:
    """Queued or running jobs that warm-start from ``source_job_id``."""
    source = Job.spec["warm_start"]["job_id"].as_string()
    stmt = select(Job).where(Job.status.in_(WAITING), source == source_job_id)
    return list(session.scalars(stmt.order_by(Job.created_at)))


def dependent_sweeps(session: Session, source_job_id: str) -> list[tuple[str, object]]:
    """(id, warm_start.checkpoint) of the running sweeps whose trials start from it."""
    source = _sweeps.c.spec["warm_start"]["job_id"].as_string()
    checkpoint = _sweeps.c.spec["warm_start"]["checkpoint"]
    stmt = select(_sweeps.c.id, checkpoint).where(
        _sweeps.c.status == "running", source == source_job_id
    )
    return [(str(row[0]), row[1]) for row in session.execute(stmt)]


def _as_id(checkpoint: object) -> int | None:
    if isinstance(checkpoint, int) and not isinstance(checkpoint, bool):
        return checkpoint
    return None


def pinned_checkpoint_ids(session: Session, source_job_id: str) -> set[int]:
    """The checkpoint ids (of ``source_job_id``) that waiting jobs and running sweeps name."""
    pinned = set()
    for job in dependent_jobs(session, source_job_id):
        found = _as_id((job.spec.get("warm_start") or {}).get("checkpoint"))
        if found is not None:
            pinned.add(found)
    for _, checkpoint in dependent_sweeps(session, source_job_id):
        found = _as_id(checkpoint)
        if found is not None:
            pinned.add(found)
    return pinned

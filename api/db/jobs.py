"""The jobs repository: every status change is a conditional UPDATE.

Used by the API (create, read, cancel) and by the worker (claim, heartbeat,
finish, metrics). Callers own the transaction: nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from api.db.models import Job, JobTransition, MetricPoint, utcnow

TERMINAL = frozenset({"succeeded", "failed", "canceled"})


class StaleAttempt(Exception):
    """A write from a worker whose attempt is no longer the job's current one."""


def record_transition(
    session: Session,
    job_id: str,
    from_status: str | None,
    to_status: str,
    reason: str | None,
    attempt: int,
) -> None:
    session.add(
        JobTransition(
            job_id=job_id,
            from_status=from_status,
            to_status=to_status,
            reason=reason,
            attempt=attempt,
        )
    )


def create_job(
    session: Session,
    *,
    team_id: str,
    key_id: str | None,
    name: str | None,
    spec: dict[str, Any],
    spec_version: str,
    queue: str,
    epochs: int,
    max_restarts: int,
    priority: int = 0,
    idempotency_key: str | None = None,
) -> Job:
    job = Job(
        team_id=team_id,
        created_by_key=key_id,
        name=name,
        spec=spec,
        spec_version=spec_version,
        queue=queue,
        epochs=epochs,
        max_restarts=max_restarts,
        priority=priority,
        idempotency_key=idempotency_key,
    )
    session.add(job)
    session.flush()
    record_transition(session, job.id, None, "queued", None, 0)
    return job


def get_job(session: Session, job_id: str, team_id: str | None) -> Job | None:
    """A job of the team (None = any team, for admins); another team's job is None."""
    stmt = select(Job).where(Job.id == job_id)
    if team_id is not None:
        stmt = stmt.where(Job.team_id == team_id)
    return session.scalar(stmt)


def list_jobs(
    session: Session,
    team_id: str | None,
    *,
    status: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[Job]:
    """Newest first; keyset pagination on (created_at, id)."""
    stmt = select(Job)
    if team_id is not None:
        stmt = stmt.where(Job.team_id == team_id)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if after is not None:
        created, job_id = after
        stmt = stmt.where(
            or_(
                Job.created_at < created,
                and_(Job.created_at == created, Job.id < job_id),
            )
        )
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    return list(session.scalars(stmt))


def transitions(session: Session, job_id: str) -> list[JobTransition]:
    return list(
        session.scalars(
            select(JobTransition).where(JobTransition.job_id == job_id).order_by(JobTransition.id)
        )
    )


def request_cancel(session: Session, job: Job) -> None:
    """Queued: canceled at once. Running: a flag the worker's heartbeat reads."""
    now = utcnow()
    done = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == "queued")
        .values(
            status="canceled",
            status_reason="canceled_by_user",
            finished_at=now,
            updated_at=now,
            cancel_requested=True,
        )
    )
    if done.rowcount:  # type: ignore[attr-defined]
        record_transition(session, job.id, "queued", "canceled", "canceled_by_user", job.attempt)
    else:
        session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == "running")
            .values(cancel_requested=True, updated_at=now)
        )
    session.refresh(job)


def claim_job(session: Session, job_id: str, lease_seconds: float) -> int | None:
    """queued → running, attempt + 1. None when someone else has it (a duplicate delivery)."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued", Job.cancel_requested.is_(False))
        .values(
            status="running",
            attempt=Job.attempt + 1,
            updated_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=now,
            status_reason=None,
            error=None,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    attempt = session.scalar(select(Job.attempt).where(Job.id == job_id))
    assert attempt is not None
    record_transition(session, job_id, "queued", "running", None, attempt)
    return attempt


@dataclass(frozen=True)
class Heartbeat:
    cancel_requested: bool


def heartbeat(
    session: Session,
    job_id: str,
    attempt: int,
    lease_seconds: float,
    *,
    epoch: int | None = None,
    step: int | None = None,
) -> Heartbeat:
    """Renew the lease (and record progress); raises StaleAttempt when fenced off."""
    now = utcnow()
    values: dict[str, Any] = {
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
        "updated_at": now,
    }
    if epoch is not None:
        values["progress_epoch"] = epoch
    if step is not None:
        values["progress_step"] = step
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempt == attempt, Job.status == "running")
        .values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleAttempt(job_id)
    flag = session.scalar(select(Job.cancel_requested).where(Job.id == job_id))
    return Heartbeat(cancel_requested=bool(flag))


def finish_job(
    session: Session,
    job_id: str,
    attempt: int,
    *,
    status: str,
    reason: str,
    error: str | None = None,
    stopped_epoch: int | None = None,
    progress: tuple[int, int] | None = None,
) -> None:
    """running → a terminal status, only for the current attempt."""
    assert status in TERMINAL
    now = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "status_reason": reason,
        "error": error,
        "finished_at": now,
        "updated_at": now,
        "lease_expires_at": None,
        "stopped_epoch": stopped_epoch,
    }
    if progress is not None:
        values["progress_epoch"], values["progress_step"] = progress
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempt == attempt, Job.status == "running")
        .values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleAttempt(job_id)
    record_transition(session, job_id, "running", status, reason, attempt)


# ----------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Point:
    name: str
    step: int
    epoch: int
    value: float


def write_metrics(session: Session, job_id: str, attempt: int, points: Sequence[Point]) -> None:
    """Upsert a batch keyed by (job, name, step), fenced by the attempt."""
    if not points:
        return
    # Touching the job row under the attempt check fences the write, and on
    # PostgreSQL its row lock orders it against a concurrent re-claim.
    fenced = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempt == attempt, Job.status == "running")
        .values(updated_at=utcnow())
    )
    if fenced.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleAttempt(job_id)
    rows = [
        {
            "job_id": job_id,
            "name": p.name,
            "step": p.step,
            "epoch": p.epoch,
            "value": p.value,
            "attempt": attempt,
        }
        for p in points
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(MetricPoint).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["job_id", "name", "step"],
        set_={
            "epoch": stmt.excluded.epoch,
            "value": stmt.excluded.value,
            "attempt": stmt.excluded.attempt,
        },
    )
    session.execute(stmt)


def read_metrics(
    session: Session,
    job_id: str,
    names: Sequence[str] | None,
    since_step: int | None,
) -> list[MetricPoint]:
    stmt = select(MetricPoint).where(MetricPoint.job_id == job_id)
    if names:
        stmt = stmt.where(MetricPoint.name.in_(list(names)))
    if since_step is not None:
        stmt = stmt.where(MetricPoint.step >= since_step)
    return list(session.scalars(stmt.order_by(MetricPoint.name, MetricPoint.step)))

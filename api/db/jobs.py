"""The jobs repository: every status change is a conditional UPDATE.

Used by the API (create, read, cancel) and by the worker (claim, heartbeat,
finish, metrics). Callers own the transaction: nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, delete, or_, select, true, update
from sqlalchemy.orm import Session

from api.db import events
from api.db.models import Job, JobTransition, MetricPoint, utcnow

TERMINAL = frozenset({"succeeded", "failed", "canceled"})


_FENCING = {"on": True}


def disable_fencing_for_fault_tests() -> None:
    """Fault-injection tests only (TRAINFORGE_UNSAFE_NO_FENCING): stale writes go through,
    to prove the fault suite notices when the fence is gone."""
    _FENCING["on"] = False


def _is_current(attempt: int) -> ColumnElement[bool]:
    return Job.attempt == attempt if _FENCING["on"] else true()


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
    """The history row and its ``status`` event, in the caller's transaction.

    Callers change the job row first (a conditional UPDATE), which is what
    orders this job's events (see api.db.events).
    """
    at = utcnow()
    session.add(
        JobTransition(
            job_id=job_id,
            from_status=from_status,
            to_status=to_status,
            reason=reason,
            attempt=attempt,
            at=at,
        )
    )
    events.add_event(
        session,
        job_id,
        events.STATUS,
        {
            "from_status": from_status,
            "to_status": to_status,
            "reason": reason,
            "attempt": attempt,
            "at": at.isoformat(),
        },
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


def transitions_for(session: Session, job_ids: Sequence[str]) -> dict[str, list[JobTransition]]:
    """The transitions of several jobs in one query (a page of a listing)."""
    out: dict[str, list[JobTransition]] = {job_id: [] for job_id in job_ids}
    if job_ids:
        stmt = (
            select(JobTransition)
            .where(JobTransition.job_id.in_(list(job_ids)))
            .order_by(JobTransition.id)
        )
        for t in session.scalars(stmt):
            out[t.job_id].append(t)
    return out


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


RETRYABLE = frozenset({"failed", "canceled"})


def retry_job(session: Session, job: Job) -> bool:
    """failed/canceled → queued (the worker resumes from the latest checkpoint).

    Compare-and-set on the status read, so a concurrent retry or cancel
    cannot both win; False when the job is not (or no longer) retryable.
    """
    if job.status not in RETRYABLE:
        return False
    now = utcnow()
    done = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == job.status)
        .values(
            status="queued",
            status_reason=None,
            error=None,
            cancel_requested=False,
            finished_at=None,
            lease_expires_at=None,
            stopped_epoch=None,
            updated_at=now,
            published_at=now,
        )
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return False
    record_transition(session, job.id, job.status, "queued", None, job.attempt)
    session.refresh(job)
    return True


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
        .where(Job.id == job_id, _is_current(attempt), Job.status == "running")
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
        .where(Job.id == job_id, _is_current(attempt), Job.status == "running")
        .values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleAttempt(job_id)
    record_transition(session, job_id, "running", status, reason, attempt)


# ----------------------------------------------------------------------------- metrics


class Point(NamedTuple):
    # A tuple: the metric sink makes one per value logged, at every step.
    name: str
    step: int
    epoch: int
    value: float


def fence(session: Session, job_id: str, attempt: int) -> None:
    """Raise StaleAttempt unless ``attempt`` is the job's current, running attempt.

    Touching the job row under the attempt check fences the write, and on
    PostgreSQL its row lock orders it against a concurrent re-claim (and
    orders the job's events, see api.db.events).
    """
    fenced = session.execute(
        update(Job)
        .where(Job.id == job_id, _is_current(attempt), Job.status == "running")
        .values(updated_at=utcnow())
    )
    if fenced.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleAttempt(job_id)


# The same text on SQLite (3.24+) and PostgreSQL, handed to the driver's executemany
# as is: SQLAlchemy's per-row parameter processing cost more than the database work
# for the batches of small rows a step-level metric stream produces.
_UPSERT = (
    "INSERT INTO metric_points (job_id, name, step, epoch, value, attempt) "
    "VALUES ({marks}) ON CONFLICT (job_id, name, step) DO UPDATE SET "
    "epoch = excluded.epoch, value = excluded.value, attempt = excluded.attempt"
)
_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def metrics_payload(points: Sequence[Point]) -> dict[str, Any]:
    """What the ``metrics`` event stores of a batch: per series, the steps it covers.

    Not the points themselves: they are in metric_points already, and copying
    them (as JSON, in the training process) would double the store's cost per
    point. The events endpoint reads the points of these ranges when it sends
    the event. Within one attempt each (name, step) is logged once and steps
    never go back, so a batch's ranges hold exactly its points.
    """
    ranges: dict[str, list[int]] = {}
    for p in points:
        span = ranges.get(p.name)
        if span is None:
            ranges[p.name] = [p.step, p.step]
        elif p.step > span[1]:
            span[1] = p.step
        elif p.step < span[0]:
            span[0] = p.step
    return {"count": len(points), "ranges": ranges}


def write_metrics(session: Session, job_id: str, attempt: int, points: Sequence[Point]) -> None:
    """Upsert a batch keyed by (job, name, step), fenced by the attempt, plus its event.

    NaN is stored as NULL on every backend: SQLite cannot store NaN (it
    becomes NULL anyway), and one encoding keeps both stores and SQL MIN/MAX
    alike. Infinities are stored as they are (both backends keep them).
    """
    if not points:
        return
    fence(session, job_id, attempt)
    rows = [
        (job_id, p.name, p.step, p.epoch, None if p.value != p.value else p.value, attempt)
        for p in points  # (v != v: NaN)
    ]
    conn = session.connection()
    mark = _MARKS[conn.dialect.paramstyle]
    conn.exec_driver_sql(_UPSERT.format(marks=", ".join([mark] * 6)), rows)
    # The attempt says which run wrote the batch (a fenced-off one never does).
    events.add_event(
        session, job_id, events.METRICS, {"attempt": attempt, **metrics_payload(points)}
    )


def delete_metrics_after(session: Session, job_id: str, attempt: int, step: int) -> int:
    """A resumed (or restarted) attempt owns every step after its start: drop the old ones.

    The upsert overwrites the steps the new attempt logs again; this removes
    those it might never reach (it may stop earlier), so the series stays one run.
    """
    fence(session, job_id, attempt)
    result = session.execute(
        delete(MetricPoint).where(MetricPoint.job_id == job_id, MetricPoint.step > step)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


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

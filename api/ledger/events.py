"""The job event log behind ``GET /v1/jobs/{id}/events`` (Server-Sent Events).

Every event is written in the same transaction as the change it reports (a
status transition, a metric batch, a checkpoint), so a reader never sees an
event without its data or data without its event.

Ordering: readers page by ``id > last seen``. That is only safe if, for one
job, ids are handed out in commit order -- otherwise a reader could skip an
id whose transaction commits after a larger one. Every writer of a job's
events first UPDATEs the job row in the same transaction (the attempt fence,
or the status change itself), and on PostgreSQL that row lock serialises the
writers of one job until commit; SQLite serialises all writers. So ids of one
job's events are allocated in commit order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from api.db.models import Base, table, utcnow

STATUS, METRICS, CHECKPOINT = "status", "metrics", "checkpoint"


class JobEvent(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_job_id_id", "job_id", "id"),)

    # BIGINT on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def add_event(session: Session, job_id: str, kind: str, payload: dict[str, Any]) -> None:
    """Append an event; the caller must hold the job row (see the module docstring).

    Inserted now (not at the next flush), so its id is taken while the row lock is held.
    """
    # The table, not the entity: a Core INSERT skips the ORM's bulk-insert preparation.
    session.execute(insert(table(JobEvent)), {"job_id": job_id, "kind": kind, "payload": payload})


def events_after(session: Session, job_id: str, after_id: int, limit: int) -> list[JobEvent]:
    stmt = (
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.id > after_id)
        .order_by(JobEvent.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def last_status_at_or_before(session: Session, job_id: str, event_id: int) -> JobEvent | None:
    """The status event in force at ``event_id``: tells a resuming stream whether it had ended."""
    stmt = (
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.kind == STATUS, JobEvent.id <= event_id)
        .order_by(JobEvent.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)


# Strict JSON (and PostgreSQL's json type) has no NaN or infinities; event
# payloads and checkpoint metrics carry them as the strings the API documents.
_SPECIAL = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def json_float(value: float | None) -> float | str:
    """A metric value for JSON; None is how the metric table stores NaN."""
    if value is None or value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def from_json_float(value: float | str | None) -> float:
    if isinstance(value, str):
        return _SPECIAL[value]
    return float("nan") if value is None else float(value)

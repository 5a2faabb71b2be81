"""Worker presence: each ``trainforge worker`` upserts its row every few seconds.

``/metrics`` reads it (workers alive, heartbeat age), so an operator can alert
on "jobs are queued and no worker is alive". A worker that stops cleanly
deletes its row; a dead one's row ages and is purged after ``PURGE_AFTER``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from api.db.models import Base, utcnow

PURGE_AFTER = timedelta(days=1)


class WorkerPresence(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # the Celery hostname
    queues: Mapped[str] = mapped_column(String(500))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)


def beat(session: Session, worker_id: str, queues: str) -> None:
    """Upsert this worker's row (UPDATE, else INSERT: portable, and one writer per id)."""
    now = utcnow()
    done = session.execute(
        update(WorkerPresence)
        .where(WorkerPresence.id == worker_id)
        .values(heartbeat_at=now, queues=queues)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        session.add(WorkerPresence(id=worker_id, queues=queues, started_at=now, heartbeat_at=now))
    session.execute(delete(WorkerPresence).where(WorkerPresence.heartbeat_at < now - PURGE_AFTER))


def leave(session: Session, worker_id: str) -> None:
    session.execute(delete(WorkerPresence).where(WorkerPresence.id == worker_id))


# A worker beats every TRAINFORGE_WORKER_HEARTBEAT_SECONDS (10 s): one silent for a
# minute is taken for gone when the API explains why a job waits.
ALIVE_WITHIN = timedelta(minutes=1)


def queue_served(session: Session, queue: str, within: timedelta = ALIVE_WITHIN) -> bool:
    """Whether a worker alive within ``within`` consumes ``queue``."""
    since = utcnow() - within
    rows = session.scalars(
        select(WorkerPresence.queues).where(WorkerPresence.heartbeat_at >= since)
    )
    return any(queue in listed.split(",") for listed in rows)


def heartbeats(session: Session) -> list[tuple[str, str, datetime]]:
    rows = session.execute(
        select(WorkerPresence.id, WorkerPresence.queues, WorkerPresence.heartbeat_at)
    )
    return [(r.id, r.queues, r.heartbeat_at) for r in rows]

"""Worker presence: each ``trainforge worker`` upserts its row every few seconds.

``/metrics`` reads it (workers alive, heartbeat age), so an operator can alert
on "jobs are queued and no worker is alive". A worker that stops cleanly
deletes its row; a dead one's row ages and is purged after ``PURGE_AFTER``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Integer, String, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from api.db.models import Base, utcnow

PURGE_AFTER = timedelta(days=1)


class WorkerPresence(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # the Celery hostname
    queues: Mapped[str] = mapped_column(String(500))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Issue 27: the devices it offers and the pool they come from (api.ledger.devices).
    devices: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    device_pool: Mapped[str | None] = mapped_column(String(200), default=None)


class DevicePool(Base):
    """A set of devices that one or more worker processes of a host draw from.

    Its row is the lock every claim from the pool takes first, so two claims on one
    pool are serialised and each sees the other's reservation (api.ledger.devices).
    """

    __tablename__ = "device_pools"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    devices: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


def touch_pool(session: Session, name: str, devices: int) -> None:
    """Write the pool's row (created if new): its size, and -- on PostgreSQL -- its row
    lock until the transaction ends (api.ledger.devices.lock_pool)."""
    now = utcnow()
    stmt = (
        update(DevicePool)
        .where(DevicePool.name == name)
        .values(devices=devices, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if session.execute(stmt).rowcount:  # type: ignore[attr-defined]
        return
    try:
        with session.begin_nested():  # a concurrent first writer may insert it too
            session.add(DevicePool(name=name, devices=devices, updated_at=now))
    except IntegrityError:
        session.execute(stmt)  # it exists now: wait for (and take) its lock


def beat(
    session: Session,
    worker_id: str,
    queues: str,
    devices: int = 1,
    device_pool: str | None = None,
) -> None:
    """Upsert this worker's row (UPDATE, else INSERT: portable, and one writer per id),
    with the devices it offers and its pool."""
    now = utcnow()
    pool = device_pool or worker_id
    done = session.execute(
        update(WorkerPresence)
        .where(WorkerPresence.id == worker_id)
        .values(heartbeat_at=now, queues=queues, devices=devices, device_pool=pool)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        session.add(
            WorkerPresence(
                id=worker_id,
                queues=queues,
                started_at=now,
                heartbeat_at=now,
                devices=devices,
                device_pool=pool,
            )
        )
    session.execute(delete(WorkerPresence).where(WorkerPresence.heartbeat_at < now - PURGE_AFTER))
    session.flush()
    touch_pool(session, pool, devices)


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


def largest_alive(session: Session, queue: str, within: timedelta = ALIVE_WITHIN) -> int:
    """The most devices an alive worker consuming ``queue`` offers (0: none alive)."""
    since = utcnow() - within
    rows = session.execute(
        select(WorkerPresence.queues, WorkerPresence.devices).where(
            WorkerPresence.heartbeat_at >= since
        )
    )
    return max((int(n or 1) for listed, n in rows if queue in listed.split(",")), default=0)


def all_workers(session: Session) -> list[WorkerPresence]:
    return list(session.scalars(select(WorkerPresence).order_by(WorkerPresence.id)))


def heartbeats(session: Session) -> list[tuple[str, str, datetime]]:
    rows = session.execute(
        select(WorkerPresence.id, WorkerPresence.queues, WorkerPresence.heartbeat_at)
    )
    return [(r.id, r.queues, r.heartbeat_at) for r in rows]

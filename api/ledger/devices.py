"""Device pools and reservations (issue 27): a job needing N devices gets N at once or none.

A *pool* is a set of devices (GPUs, or CPU process slots) that one or more worker
processes of a host draw from; by default each worker is a pool of its own. A job's
reservation is part of its row: ``device_pool`` and ``device_ids``, written by the very
UPDATE that claims it (queued → running), and counted only while the job is
``running``. So a reservation is made in the claim's transaction or not at all (no
partial allocation), and it is given back by whatever takes the job out of
``running`` -- its end, the reconciler's takeover of a lost worker, a hand-back on
shutdown -- with no second write that could be forgotten.

Every claim from a pool first writes the pool's row (:func:`lock_pool`). On PostgreSQL
that row lock serialises the claims of one pool, and under READ COMMITTED each reads
the reservations the previous one committed; on SQLite the write takes the database's
single writer lock before anything is read. Two claims can therefore never both see
the same devices free, and since each takes only this one lock before the team and job
rows (always in that order), two jobs of 2 devices on a 3-device pool cannot deadlock:
one gets 2 devices, the other none until they are back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.ledger import workers
from api.ledger.models import Job
from api.ledger.workers import DevicePool


@dataclass(frozen=True)
class Pool:
    """The pool a claiming worker draws from: its name and how many devices it has."""

    name: str
    devices: int


def lock_pool(session: Session, pool: Pool) -> None:
    """Take the pool's lock for the rest of the transaction (creating its row if new)."""
    workers.touch_pool(session, pool.name, pool.devices)


def reserved(session: Session, pool_name: str) -> dict[int, str]:
    """Device index -> the running job that holds it, in ``pool_name``."""
    rows = session.execute(
        select(Job.id, Job.device_ids).where(Job.status == "running", Job.device_pool == pool_name)
    )
    held: dict[int, str] = {}
    for job_id, ids in rows:
        for index in ids or []:
            held[int(index)] = job_id
    return held


def free_devices(session: Session, pool: Pool) -> list[int]:
    """The pool's devices no running job holds, lowest first."""
    held = reserved(session, pool.name)
    return [i for i in range(pool.devices) if i not in held]


def choose(free: list[int], needed: int) -> list[int] | None:
    """The devices a job needing ``needed`` gets from ``free``: all at once, or None."""
    return free[:needed] if needed <= len(free) else None


def running_devices_by_team(session: Session) -> dict[str, int]:
    """Devices held by each team's running jobs: what quotas and fair share count."""
    rows = session.execute(
        select(Job.team_id, func.sum(Job.devices))
        .where(Job.status == "running")
        .group_by(Job.team_id)
    )
    return {team: int(n or 0) for team, n in rows}


def team_running_devices(session: Session, team_id: str) -> int:
    total = session.scalar(
        select(func.sum(Job.devices)).where(Job.team_id == team_id, Job.status == "running")
    )
    return int(total or 0)


@dataclass(frozen=True)
class PoolView:
    name: str
    devices: int
    free: list[int]
    held: dict[int, str]
    updated_at: datetime | None


def pools(session: Session, names: set[str]) -> dict[str, PoolView]:
    """The named pools as the admin view shows them: size, free devices, who holds the rest."""
    out: dict[str, PoolView] = {}
    for row in session.scalars(select(DevicePool).where(DevicePool.name.in_(names))):
        held = reserved(session, row.name)
        free = [i for i in range(row.devices) if i not in held]
        out[row.name] = PoolView(row.name, row.devices, free, held, row.updated_at)
    return out

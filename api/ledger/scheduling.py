"""Which queued job a free worker runs next: quotas, priority, fairness, devices.

A broker message is a doorbell, not an assignment: the worker that receives
one claims the best *eligible* job of that queue that its device pool can hold
now. Eligible means its team has room under ``max_running_jobs``, which counts
devices: a running job holds as many of its team's slots as it has devices
(``resources.devices``), so a 2-device job counts 2. Among teams, the one
holding the fewest devices goes first, ties to the one served least recently
(so one team's burst cannot starve another, and a team running a 4-device job
yields to a team running a 1-device one); within a team, higher ``priority``
first, then oldest. A job whose devices the pool cannot give at once is passed
over for this claim (it keeps its place in the queue; nothing is reserved for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.ledger import devices
from api.ledger import repository as repo
from api.ledger.models import Job
from api.teams.models import Team

MAX_CANDIDATES = 2000  # teams looked at per claim (not jobs)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Claimed:
    job_id: str
    attempt: int
    device_ids: list[int] | None = None  # the devices of the worker's pool it reserved


def _quotas(session: Session) -> dict[str, int | None]:
    return {team: quota for team, quota in session.execute(select(Team.id, Team.max_running_jobs))}


def _last_served(session: Session, teams: set[str]) -> dict[str, datetime]:
    rows = session.execute(
        select(Job.team_id, func.max(Job.started_at))
        .where(Job.team_id.in_(teams))
        .group_by(Job.team_id)
    )
    return {team: when for team, when in rows if when is not None}


def team_room(session: Session, team_id: str) -> int | None:
    """Devices the team may still start under ``max_running_jobs`` (None: no quota)."""
    quota = session.scalar(select(Team.max_running_jobs).where(Team.id == team_id))
    if quota is None:
        return None
    return quota - devices.team_running_devices(session, team_id)


def team_at_quota(session: Session, team_id: str, needed: int = 1) -> bool:
    """Whether a job of ``needed`` devices would take the team past its running quota."""
    room = team_room(session, team_id)
    return room is not None and needed > room


def _waiting_teams(session: Session, queue: str) -> list[str]:
    """Every team with a claimable queued job in ``queue`` (one row per team)."""
    return list(
        session.scalars(
            select(Job.team_id)
            .where(Job.status == "queued", Job.queue == queue, Job.cancel_requested.is_(False))
            .group_by(Job.team_id)
        )
    )


def _team_head(session: Session, queue: str, team_id: str) -> str | None:
    """The team's next job in ``queue``: higher priority first, then oldest."""
    return session.scalar(
        select(Job.id)
        .where(
            Job.status == "queued",
            Job.queue == queue,
            Job.cancel_requested.is_(False),
            Job.team_id == team_id,
        )
        .order_by(Job.priority.desc(), Job.created_at, Job.id)
        .limit(1)
    )


def pick_order(session: Session, queue: str, limit: int = MAX_CANDIDATES) -> list[str]:
    """Queued job ids of ``queue`` in the order free slots should go to them.

    One job per team with room under its quota, the team holding the fewest devices
    first, then the one served least recently. Teams are found by a grouped query, not
    by reading the first N queued rows, so a team with thousands of queued jobs cannot
    hide another team's single job.
    """
    teams = _waiting_teams(session, queue)
    if not teams:
        return []
    running, quotas = devices.running_devices_by_team(session), _quotas(session)
    eligible = [t for t in teams if quotas.get(t) is None or running.get(t, 0) < (quotas[t] or 0)]
    served = _last_served(session, set(eligible))
    eligible.sort(key=lambda t: (running.get(t, 0), served.get(t, _EPOCH), t))
    order: list[str] = []
    for team_id in eligible[:limit]:
        head = _team_head(session, queue, team_id)
        if head is not None:
            order.append(head)
    return order


def claim_next(
    session: Session, queue: str, lease_seconds: float, pool: devices.Pool
) -> Claimed | None:
    """Claim the best eligible job of ``queue`` that ``pool`` can give all its devices
    now, reserving them in the same UPDATE; None when nothing may run here now."""
    # The pool's lock first, then a team's, then the job's row: one order for every
    # claim, so claims on one pool queue up instead of deadlocking (api.ledger.devices).
    devices.lock_pool(session, pool)
    free = devices.free_devices(session, pool)
    for job_id in pick_order(session, queue, limit=5):
        row = session.execute(select(Job.team_id, Job.devices).where(Job.id == job_id)).first()
        if row is None:
            continue
        team_id, needed = row.team_id, int(row.devices or 1)
        chosen = devices.choose(free, needed)
        if chosen is None:
            continue  # this pool cannot give it all its devices now: never a part of them
        # Serialise claims within a team (PostgreSQL row lock; SQLite has one writer),
        # so two workers cannot both take a team's last free slot.
        session.execute(select(Team.id).where(Team.id == team_id).with_for_update())
        if team_at_quota(session, team_id, needed):
            continue
        attempt = repo.claim_job(
            session, job_id, lease_seconds, device_pool=pool.name, device_ids=chosen
        )
        if attempt is None:
            continue  # someone else got it
        return Claimed(job_id, attempt, chosen)
    return None


def queue_of(session: Session, job_id: str) -> str | None:
    return session.scalar(select(Job.queue).where(Job.id == job_id))

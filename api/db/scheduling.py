"""Which queued job a free worker runs next: quotas, priority, fairness.

A broker message is a doorbell, not an assignment: the worker that receives
one claims the best *eligible* job of that queue. Eligible means its team is
under ``max_running_jobs``. Among teams, the one served least recently goes
first (round-robin, so one team's burst cannot starve another); within a
team, higher ``priority`` first, then oldest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.db import jobs as repo
from api.db.models import Job, Team

MAX_CANDIDATES = 2000  # teams looked at per claim (not jobs)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Claimed:
    job_id: str
    attempt: int


def _running_by_team(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(Job.team_id, func.count()).where(Job.status == "running").group_by(Job.team_id)
    )
    return {team: int(n) for team, n in rows}


def _quotas(session: Session) -> dict[str, int | None]:
    return {team: quota for team, quota in session.execute(select(Team.id, Team.max_running_jobs))}


def _last_served(session: Session, teams: set[str]) -> dict[str, datetime]:
    rows = session.execute(
        select(Job.team_id, func.max(Job.started_at))
        .where(Job.team_id.in_(teams))
        .group_by(Job.team_id)
    )
    return {team: when for team, when in rows if when is not None}


def team_at_quota(session: Session, team_id: str) -> bool:
    quota = session.scalar(select(Team.max_running_jobs).where(Team.id == team_id))
    if quota is None:
        return False
    running = session.scalar(
        select(func.count()).where(Job.team_id == team_id, Job.status == "running")
    )
    return (running or 0) >= quota


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

    One job per eligible team, the team served least recently first. Teams are
    found by a grouped query, not by reading the first N queued rows, so a team
    with thousands of queued jobs cannot hide another team's single job.
    """
    teams = _waiting_teams(session, queue)
    if not teams:
        return []
    running, quotas = _running_by_team(session), _quotas(session)
    eligible = [t for t in teams if quotas.get(t) is None or running.get(t, 0) < (quotas[t] or 0)]
    served = _last_served(session, set(eligible))
    eligible.sort(key=lambda t: (served.get(t, _EPOCH), t))
    order: list[str] = []
    for team_id in eligible[:limit]:
        head = _team_head(session, queue, team_id)
        if head is not None:
            order.append(head)
    return order


def claim_next(session: Session, queue: str, lease_seconds: float) -> Claimed | None:
    """Claim the best eligible job of ``queue``; None when nothing may run now."""
    for job_id in pick_order(session, queue, limit=5):
        team_id = session.scalar(select(Job.team_id).where(Job.id == job_id))
        if team_id is None:
            continue
        # Serialise claims within a team (PostgreSQL row lock; SQLite has one writer),
        # so two workers cannot both take a team's last free slot.
        session.execute(select(Team.id).where(Team.id == team_id).with_for_update())
        if team_at_quota(session, team_id):
            continue
        attempt = repo.claim_job(session, job_id, lease_seconds)
        if attempt is None:
            continue  # someone else got it
        return Claimed(job_id, attempt)
    return None


def queue_of(session: Session, job_id: str) -> str | None:
    return session.scalar(select(Job.queue).where(Job.id == job_id))

"""Job list queries: a page of jobs with an optional name search, and the best value of
each job's monitored metric in one grouped query for the whole page."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from api.db.pages import newest_first
from api.ledger.events import JobEvent
from api.ledger.models import Job, MetricPoint


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_jobs(
    session: Session,
    team_id: str | None,
    *,
    status: str | None,
    name: str | None,
    sweep_id: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
    id_prefix: str | None = None,
) -> list[Job]:
    """Newest first; ``name``: jobs whose name contains it, case-insensitively;
    ``id_prefix``: jobs whose id starts with it (hex digits only, checked by the router)."""
    stmt = select(Job)
    if team_id is not None:
        stmt = stmt.where(Job.team_id == team_id)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if sweep_id is not None:
        stmt = stmt.where(Job.sweep_id == sweep_id)
    if id_prefix:
        stmt = stmt.where(Job.id.startswith(id_prefix, autoescape=True))
    if name:
        stmt = stmt.where(Job.name.ilike(f"%{_like_escape(name)}%", escape="\\"))
    return list(session.scalars(newest_first(stmt, Job, after, limit)))


def extremes(
    session: Session, wanted: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    """(job_id, metric) → (min, max) over its points, for every pair in ``wanted``."""
    if not wanted:
        return {}
    pairs = list(dict.fromkeys(wanted))
    job_ids = sorted({j for j, _ in pairs})
    names = sorted({n for _, n in pairs})
    stmt = (
        select(
            MetricPoint.job_id,
            MetricPoint.name,
            func.min(MetricPoint.value),
            func.max(MetricPoint.value),
        )
        .where(MetricPoint.job_id.in_(job_ids), MetricPoint.name.in_(names))
        .group_by(MetricPoint.job_id, MetricPoint.name)
    )
    if len(names) > 1:  # only the pairs asked for, not every job x every name
        stmt = stmt.where(tuple_(MetricPoint.job_id, MetricPoint.name).in_(pairs))
    return {(r[0], r[1]): (r[2], r[3]) for r in session.execute(stmt)}


def events_version(session: Session) -> int:
    """The newest event id (0 when there is none): every change a job list shows writes
    an event, so while this has not moved, no page has changed (``api.jobs.list_cache``)."""
    return session.scalar(select(func.max(JobEvent.id))) or 0

"""Sweep rows, their trials' rows and their events. Callers own the transaction.

Lock order, everywhere: the sweep row, then its trials' job rows. The code
that ends a trial locks the sweep first (``lock_sweep_of_job``), so it can
never deadlock with a cancel of the sweep, and two trials of one sweep that
end at once take turns: the second sees the first's new trial.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from api.db.pages import newest_first
from api.ledger.models import Job, MetricPoint
from api.sweeps.models import Sweep, SweepEvent, SweepPack

TRIAL_CREATED, TRIAL_ENDED, NEW_BEST, SWEEP_ENDED, PACKING_OFF = (
    "trial_created",
    "trial_ended",
    "new_best",
    "sweep_ended",
    "packing_off",
)


def get_sweep(session: Session, sweep_id: str, team_id: str | None) -> Sweep | None:
    """A sweep of the team (None = any team, for admins); another team's sweep is None."""
    stmt = select(Sweep).where(Sweep.id == sweep_id)
    if team_id is not None:
        stmt = stmt.where(Sweep.team_id == team_id)
    return session.scalar(stmt)


def lock_sweep(session: Session, sweep_id: str, *, skip_locked: bool = False) -> Sweep | None:
    stmt = select(Sweep).where(Sweep.id == sweep_id).with_for_update(skip_locked=skip_locked)
    return session.scalar(stmt.execution_options(populate_existing=True))


def lock_sweep_of_job(session: Session, job_id: str) -> Sweep | None:
    """The sweep of a trial, locked (before its job row is); None for a plain job."""
    sweep_id = session.scalar(select(Job.sweep_id).where(Job.id == job_id))
    return lock_sweep(session, sweep_id) if sweep_id is not None else None


def running_sweep_ids(session: Session) -> list[str]:
    return list(session.scalars(select(Sweep.id).where(Sweep.status == "running")))


def list_sweeps(
    session: Session, team_id: str | None, *, limit: int, after: tuple[datetime, str] | None
) -> list[Sweep]:
    stmt = select(Sweep)
    if team_id is not None:
        stmt = stmt.where(Sweep.team_id == team_id)
    return list(session.scalars(newest_first(stmt, Sweep, after, limit)))


def trials(session: Session, sweep_id: str) -> list[Job]:
    stmt = select(Job).where(Job.sweep_id == sweep_id).order_by(Job.trial_number)
    return list(session.scalars(stmt))


def objective_series(
    session: Session, job_ids: Sequence[str], metric: str
) -> dict[str, dict[int, float]]:
    """Per trial: epochs completed → the metric's value at that epoch's end (NaN kept)."""
    out: dict[str, dict[int, float]] = defaultdict(dict)
    if not job_ids:
        return out
    rows = session.execute(
        select(MetricPoint.job_id, MetricPoint.epoch, MetricPoint.value)
        .where(MetricPoint.job_id.in_(list(job_ids)), MetricPoint.name == metric)
        .order_by(MetricPoint.job_id, MetricPoint.step)
    )
    for job_id, epoch, value in rows:
        out[job_id][int(epoch) + 1] = float("nan") if value is None else float(value)
    return out


def add_event(session: Session, sweep_id: str, kind: str, payload: dict[str, Any]) -> None:
    """Append a sweep event; the caller holds the sweep row (see the module docstring)."""
    session.execute(insert(SweepEvent).values(sweep_id=sweep_id, kind=kind, payload=payload))


def ended_trials_reported(session: Session, sweep_id: str) -> set[str]:
    """Job ids whose ``trial_ended`` event is written (each trial's end is reported once)."""
    rows = session.scalars(
        select(SweepEvent.payload).where(
            SweepEvent.sweep_id == sweep_id, SweepEvent.kind == TRIAL_ENDED
        )
    )
    return {str(p["job_id"]) for p in rows}


def events_after(session: Session, sweep_id: str, after_id: int, limit: int) -> list[SweepEvent]:
    stmt = (
        select(SweepEvent)
        .where(SweepEvent.sweep_id == sweep_id, SweepEvent.id > after_id)
        .order_by(SweepEvent.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def has_ended_at_or_before(session: Session, sweep_id: str, event_id: int) -> bool:
    stmt = select(func.count()).where(
        SweepEvent.sweep_id == sweep_id,
        SweepEvent.kind == SWEEP_ENDED,
        SweepEvent.id <= event_id,
    )
    return bool(session.scalar(stmt))


# -------------------------------------------------------------------- packs (issue 26)


def pack_candidates(
    session: Session, sweep_id: str, queue: str, exclude: str, limit: int
) -> list[Job]:
    """Queued trials of the sweep in ``queue`` a claim may add to a pack, by trial number."""
    stmt = (
        select(Job)
        .where(
            Job.sweep_id == sweep_id,
            Job.queue == queue,
            Job.status == "queued",
            Job.cancel_requested.is_(False),
            Job.id != exclude,
        )
        .order_by(Job.trial_number)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def add_pack(
    session: Session, sweep_id: str, job_ids: Sequence[str], pack_key: str, worker: str | None
) -> SweepPack:
    """Record a pack (in the claim's transaction) and point each member's ``pack_id`` at it."""
    pack = SweepPack(sweep_id=sweep_id, job_ids=list(job_ids), pack_key=pack_key, worker=worker)
    session.add(pack)
    session.flush()
    session.execute(update(Job).where(Job.id.in_(list(job_ids))).values(pack_id=pack.id))
    return pack


def packs(session: Session, sweep_id: str) -> list[SweepPack]:
    stmt = select(SweepPack).where(SweepPack.sweep_id == sweep_id)
    return list(session.scalars(stmt.order_by(SweepPack.started_at, SweepPack.id)))


def packing_off_reason(session: Session, sweep_id: str) -> str | None:
    """The reason of the sweep's ``packing_off`` event, if packing fell back to off."""
    payload = session.scalar(
        select(SweepEvent.payload)
        .where(SweepEvent.sweep_id == sweep_id, SweepEvent.kind == PACKING_OFF)
        .order_by(SweepEvent.id)
        .limit(1)
    )
    return None if payload is None else str(payload.get("reason"))

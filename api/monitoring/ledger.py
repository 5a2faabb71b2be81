"""The job ledger as Prometheus metrics, computed from SQL when ``/metrics`` is scraped.

Gauges (jobs by status, queued jobs by reason, workers alive) are exact counts of
the rows at that moment, the same rows the API serves. Counters and histograms
come from ``job_transitions``, which is append-only, so they only grow, as
Prometheus counters must, and every API replica reports the same values:

- ``trainforge_jobs_ended_total{status,status_reason}``: transitions into a
  terminal status (a job retried and failed twice counts twice).
- ``trainforge_job_queue_wait_seconds{queue}``: per start (queued → running),
  the time since the job was (re)queued -- submit → running for a first run.
- ``trainforge_job_run_seconds{queue,status}``: per run that ended, running → end.

Each scrape scans ``job_transitions`` once (a window function), so its cost grows
with the history; the collector caches a result for a few seconds. Durations are
bucketed in SQL, so no per-job rows leave the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, Float, case, func, inspect, literal, select
from sqlalchemy.orm import Session

from api.db.models import utcnow
from api.ledger import devices, workers
from api.ledger.models import Job, JobTransition
from api.teams.models import Team

TERMINAL = ("succeeded", "failed", "canceled")
WAIT_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
RUN_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)


@dataclass
class Histogram:
    """Cumulative bucket counts (for each upper bound), total count and sum."""

    bounds: Sequence[float]
    buckets: list[int]
    count: int
    total: float


@dataclass
class Ledger:
    jobs: dict[tuple[str, str], int] = field(default_factory=dict)  # (status, queue)
    queued: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, reason)
    ended: dict[tuple[str, str], int] = field(default_factory=dict)  # (status, reason)
    waits: dict[str, Histogram] = field(default_factory=dict)  # queue
    runs: dict[tuple[str, str], Histogram] = field(default_factory=dict)  # (queue, status)
    heartbeats: list[tuple[str, float]] = field(default_factory=list)  # (worker, age s)
    sweeps: dict[str, int] | None = None  # status (None: no sweeps in this deployment)
    trials: dict[str, int] | None = None  # status of sweep trials (jobs)
    packs: tuple[int, int] | None = None  # (packs running, trials running in a pack)


def _epoch_seconds(session: Session, column: ColumnElement[datetime]) -> ColumnElement[float]:
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", column).cast(Float)
    return (func.julianday(column) - literal(2440587.5)) * literal(86400.0)


def _histograms(
    session: Session,
    from_status: str,
    to_statuses: Sequence[str],
    bounds: Sequence[float],
    *,
    by_status: bool,
) -> dict[tuple[str, ...], Histogram]:
    """Durations from the job's previous transition, per queue (and the status reached)."""
    t = JobTransition
    lagged = select(
        t.job_id,
        t.from_status,
        t.to_status,
        t.at,
        func.lag(t.at).over(partition_by=t.job_id, order_by=t.id).label("prev_at"),
    ).subquery()
    seconds = _epoch_seconds(session, lagged.c.at) - _epoch_seconds(session, lagged.c.prev_at)
    label_cols = [Job.queue, lagged.c.to_status] if by_status else [Job.queue]
    stmt = (
        select(
            *label_cols,
            func.count(),
            func.coalesce(func.sum(seconds), 0.0),
            *[func.sum(case((seconds <= b, 1), else_=0)) for b in bounds],
        )
        .select_from(lagged)
        .join(Job, Job.id == lagged.c.job_id)
        .where(lagged.c.from_status == from_status, lagged.c.to_status.in_(list(to_statuses)))
        .group_by(*label_cols)
    )
    out: dict[tuple[str, ...], Histogram] = {}
    n = len(label_cols)
    for row in session.execute(stmt):
        values = list(row)
        out[tuple(str(v) for v in values[:n])] = Histogram(
            bounds=bounds,
            buckets=[int(v or 0) for v in values[n + 2 :]],
            count=int(values[n]),
            total=float(values[n + 1] or 0.0),
        )
    return out


def _served(session: Session, cache: dict[str, bool], queue: str) -> bool:
    if queue not in cache:
        cache[queue] = workers.queue_served(session, queue)
    return cache[queue]


def _queued_by_reason(session: Session) -> dict[tuple[str, str], int]:
    """As the API's ``queue_reason`` (api.jobs.service): ``quota`` when the job's devices
    would take its team past max_running_jobs (which counts devices),
    ``waiting_for_gpu`` for a cuda job whose queue no alive worker consumes,
    ``waiting_for_devices`` when no alive worker of its queue offers its devices, else
    ``waiting_for_worker``."""
    running = devices.running_devices_by_team(session)
    quotas = dict(session.execute(select(Team.id, Team.max_running_jobs)).all())
    out: dict[tuple[str, str], int] = {}
    device = Job.spec["resources"]["device"].as_string()
    rows = session.execute(
        select(Job.queue, Job.team_id, device, Job.devices, func.count())
        .where(Job.status == "queued")
        .group_by(Job.queue, Job.team_id, device, Job.devices)
    )
    served: dict[str, bool] = {}
    largest: dict[str, int] = {}
    for queue, team, wants, needed, n in rows:
        quota, needed = quotas.get(team), int(needed or 1)
        if quota is not None and running.get(team, 0) + needed > quota:
            reason = "quota"
        elif wants == "cuda" and not _served(session, served, queue):
            reason = "waiting_for_gpu"
        elif needed > 1 and _largest(session, largest, queue) < needed:
            reason = "waiting_for_devices"
        else:
            reason = "waiting_for_worker"
        out[(queue, reason)] = out.get((queue, reason), 0) + int(n)
    return out


def _largest(session: Session, cache: dict[str, int], queue: str) -> int:
    if queue not in cache:
        cache[queue] = workers.largest_alive(session, queue)
    return cache[queue]


def _sweeps(session: Session, ledger: Ledger) -> None:
    try:
        from api.sweeps.models import Sweep
    except ImportError:  # a deployment without sweeps
        return
    if not inspect(session.connection()).has_table(Sweep.__tablename__):
        return  # the code is newer than the schema: `trainforge db upgrade` adds it
    ledger.sweeps = {
        s: int(n)
        for s, n in session.execute(select(Sweep.status, func.count()).group_by(Sweep.status))
    }
    sweep_id = getattr(Job, "sweep_id", None)
    if sweep_id is not None:
        rows = session.execute(
            select(Job.status, func.count()).where(sweep_id.is_not(None)).group_by(Job.status)
        )
        ledger.trials = {s: int(n) for s, n in rows}
    pack_id = getattr(Job, "pack_id", None)
    if pack_id is not None:
        packs, members = session.execute(
            select(func.count(func.distinct(pack_id)), func.count(pack_id)).where(
                Job.status == "running"
            )
        ).one()
        ledger.packs = (int(packs or 0), int(members or 0))


def read_ledger(session: Session) -> Ledger:
    ledger = Ledger()
    for status, queue, n in session.execute(
        select(Job.status, Job.queue, func.count()).group_by(Job.status, Job.queue)
    ):
        ledger.jobs[(status, queue)] = int(n)
    ledger.queued = _queued_by_reason(session)
    t = JobTransition
    for status, reason, n in session.execute(
        select(t.to_status, t.reason, func.count())
        .where(t.to_status.in_(TERMINAL))
        .group_by(t.to_status, t.reason)
    ):
        ledger.ended[(status, reason or "")] = int(n)
    waits = _histograms(session, "queued", ["running"], WAIT_BUCKETS, by_status=False)
    ledger.waits = {k[0]: h for k, h in waits.items()}
    runs = _histograms(session, "running", TERMINAL, RUN_BUCKETS, by_status=True)
    ledger.runs = {(k[0], k[1]): h for k, h in runs.items()}
    now = utcnow()
    ledger.heartbeats = [
        (worker_id, max(0.0, (now - at).total_seconds()))
        for worker_id, _, at in workers.heartbeats(session)
    ]
    _sweeps(session, ledger)
    return ledger

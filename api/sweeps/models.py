"""The sweep ledger: one row per sweep, and its event log.

A sweep's trials are rows of ``jobs`` (``sweep_id``, ``trial_number``,
``params``); everything the search needs to continue -- the trials, their
parameters, states and per-epoch objective values -- is in these tables and
``metric_points``, so Optuna's state is rebuilt from rows whenever it is
needed and no process has to stay up (see docs/sweeps.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from api.db.models import Base, new_id, utcnow


class Sweep(Base):
    __tablename__ = "sweeps"
    __table_args__ = (
        Index("ix_sweeps_team_created", "team_id", "created_at", "id"),
        Index("ix_sweeps_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    created_by_key: Mapped[str | None] = mapped_column(String(32), default=None)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    # running | succeeded | canceled | failed
    status: Mapped[str] = mapped_column(String(16), default="running")
    status_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the resolved base spec
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    algorithm: Mapped[dict[str, Any]] = mapped_column(JSON)
    objective: Mapped[dict[str, Any]] = mapped_column(JSON)  # mode resolved: min | max
    early_termination: Mapped[dict[str, Any]] = mapped_column(JSON)
    max_trials: Mapped[int] = mapped_column(Integer)  # for grid: min(max_trials, grid size)
    max_concurrent_trials: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # How trials run (issue 26): {"pack": "auto" | "off", "max_pack": n}; the migration sets
    # "off" on older sweeps; None (never written now) reads as the defaults.
    execution: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    queues: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"cpu": name, "cuda": name}
    best_job_id: Mapped[str | None] = mapped_column(String(32), default=None)
    best_value: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class SweepEvent(Base):
    """``trial_created``, ``trial_ended``, ``new_best``, ``sweep_ended``.

    Written in the transaction of the change, under the sweep's row lock, so a
    sweep's event ids are allocated in commit order (as api.ledger.events explains
    for jobs) and ``Last-Event-ID`` resumes without a gap.
    """

    __tablename__ = "sweep_events"
    __table_args__ = (Index("ix_sweep_events_sweep_id_id", "sweep_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    sweep_id: Mapped[str] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SweepPack(Base):
    """Trials of one sweep that one worker claimed together and trained as one pack.

    Written in the claim's transaction; a trial's ``jobs.pack_id`` names its latest pack
    (a trial resumed after a lost worker may train in a second pack).
    """

    __tablename__ = "sweep_packs"
    __table_args__ = (Index("ix_sweep_packs_sweep_started", "sweep_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # No foreign key (as jobs.sweep_id): a claim writes this row while it holds job rows,
    # and a key check would lock the sweep row after them (api/sweeps/repository.py: lock order).
    sweep_id: Mapped[str] = mapped_column(String(32))
    job_ids: Mapped[list[str]] = mapped_column(JSON)  # by trial number
    pack_key: Mapped[str] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)

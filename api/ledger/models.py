"""The job ledger's tables: jobs, their status transitions, metric points."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from api.db.models import Base, new_id, utcnow


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_team_created", "team_id", "created_at", "id"),
        Index("ix_jobs_status", "status"),
        Index("uq_jobs_team_idempotency", "team_id", "idempotency_key", unique=True),
        # A sweep's trial numbers are unique: a replayed trial-end can never add a duplicate.
        Index("uq_jobs_sweep_trial", "sweep_id", "trial_number", unique=True),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    created_by_key: Mapped[str | None] = mapped_column(String(32), default=None)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    status_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_version: Mapped[str] = mapped_column(String(8))
    queue: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # Fencing token: incremented by every claim; every write of a worker carries it.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_restarts: Mapped[int] = mapped_column(Integer, default=3)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    progress_epoch: Mapped[int] = mapped_column(Integer, default=0)
    progress_step: Mapped[int] = mapped_column(BigInteger, default=0)
    epochs: Mapped[int] = mapped_column(Integer)
    stopped_epoch: Mapped[int | None] = mapped_column(Integer, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    request_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    # Requeues after a lost worker, compared with max_restarts by the reconciler.
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    # When the doorbell last rang; the reconciler re-publishes long-queued jobs.
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A sweep's trial (api/sweeps): its sweep (indexed, no foreign key so this module stays
    # free of the sweeps package), its number within the sweep, and its sampled parameters.
    sweep_id: Mapped[str | None] = mapped_column(String(32), default=None)
    trial_number: Mapped[int | None] = mapped_column(Integer, default=None)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Devices (issue 27): how many the job needs (spec.resources.devices, a column so that
    # quotas and fair share count them cheaply), and -- while it runs -- which devices of
    # which pool its attempt reserved. Reserved = running with these set (api.ledger.devices).
    devices: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    device_pool: Mapped[str | None] = mapped_column(String(200), default=None)
    device_ids: Mapped[list[int] | None] = mapped_column(JSON, default=None)
    # spec.warm_start planned at submit (api.checkpoints.warm_start): the source checkpoint and
    # which tensors load, which keep their initialisation and why (issue 24).
    warm_start: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The pack (api.sweeps.models.SweepPack) this trial last trained in; None = alone.
    pack_id: Mapped[str | None] = mapped_column(String(32), default=None)


class JobTransition(Base):
    """Every status change, in order: the job's history."""

    __tablename__ = "job_transitions"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32), default=None)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class MetricPoint(Base):
    """One value of one series at one global step; upserted, so a replay never duplicates."""

    __tablename__ = "metric_points"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Float)
    attempt: Mapped[int] = mapped_column(Integer)

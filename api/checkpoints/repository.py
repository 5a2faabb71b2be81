"""Checkpoints in the SQL store: one row each, the files in the blob store (api.db.blobs).

A checkpoint holds two safetensors files: ``weights`` (the model's
state_dict, what users download) and ``resume`` (optimizer, RNG, schedule
state: what a retried job continues from), each a blob owned by the checkpoint.
Callers own the transaction: nothing here commits.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    delete,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from api.checkpoints.warm_start_pins import pinned_checkpoint_ids
from api.db import blobs
from api.db.models import Base, utcnow
from api.ledger import events
from api.ledger import repository as jobs_repo
from api.ledger.models import Job

CHUNK_BYTES = blobs.CHUNK_BYTES
Kind = Literal["weights", "resume"]


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (Index("ix_checkpoints_job_id_id", "job_id", "id"),)

    # An integer id orders checkpoints by creation on every backend ("the latest").
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(BigInteger)
    epoch: Mapped[int] = mapped_column(Integer)
    # Non-finite values as "NaN"/"Infinity"/"-Infinity" (strict JSON).
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    is_best: Mapped[bool] = mapped_column(Boolean, default=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger)  # of the weights file
    sha256: Mapped[str] = mapped_column(String(64))  # of the weights file
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True)
class Retention:
    keep_last: int
    keep_best: int
    monitor: str
    mode: Literal["min", "max"]


def payload(ckpt: Checkpoint) -> dict[str, Any]:
    """The checkpoint as the API and its SSE event show it."""
    return {
        "id": ckpt.id,
        "step": ckpt.step,
        "epoch": ckpt.epoch,
        "metrics": ckpt.metrics,
        "is_best": ckpt.is_best,
        "size_bytes": ckpt.size_bytes,
        "sha256": ckpt.sha256,
        "created_at": ckpt.created_at.isoformat(),
    }


def save_checkpoint(
    session: Session,
    job_id: str,
    attempt: int,
    *,
    step: int,
    epoch: int,
    metrics: Mapping[str, float],
    weights: bytes,
    resume: bytes,
    retention: Retention,
    chunk_bytes: int = CHUNK_BYTES,
) -> Checkpoint:
    """Store a checkpoint of the current attempt, apply retention, emit its event.

    Raises ``StaleAttempt`` for a fenced-off attempt (the caller rolls back: nothing
    is written).
    """
    ckpt = Checkpoint(
        job_id=job_id,
        attempt=attempt,
        step=step,
        epoch=epoch,
        metrics={k: events.json_float(float(v)) for k, v in metrics.items()},
        is_best=False,
        size_bytes=len(weights),
        sha256=hashlib.sha256(weights).hexdigest(),
    )
    session.add(ckpt)
    session.flush()
    team_id = session.scalar(select(Job.team_id).where(Job.id == job_id))
    if team_id is None:  # the job was deleted: nothing of the attempt is written
        raise jobs_repo.StaleAttempt(job_id)
    files: tuple[tuple[Kind, bytes], ...] = (("weights", weights), ("resume", resume))
    for kind, data in files:
        blobs.write(session, file_ref(ckpt.id, kind), team_id, data, chunk_bytes=chunk_bytes)
    # The fence comes after the chunks: on PostgreSQL it locks the job row until the
    # commit, and a large checkpoint must not hold it while it uploads (the heartbeat,
    # a cancel and the reconciler all update that row). Retention and the event
    # follow it, ordered by that lock.
    jobs_repo.fence(session, job_id, attempt)
    deleted = apply_retention(session, job_id, retention)
    session.refresh(ckpt, ["is_best"])
    events.add_event(
        session, job_id, events.CHECKPOINT, {**payload(ckpt), "deleted": sorted(deleted)}
    )
    return ckpt


def _monitor_value(metrics: Mapping[str, Any], monitor: str) -> float | None:
    raw = metrics.get(monitor)
    if raw is None:
        return None
    value = events.from_json_float(raw)
    return None if math.isnan(value) else value  # NaN is never "best" (Keras: never improves)


def apply_retention(session: Session, job_id: str, retention: Retention) -> list[int]:
    """Keep the last ``keep_last`` and the best ``keep_best``; delete the rest with their chunks.

    Marks the single best kept checkpoint ``is_best``. Ties go to the earlier
    checkpoint, as Keras keeps a best that is only equalled. Returns deleted ids.
    """
    rows = session.execute(
        select(Checkpoint.id, Checkpoint.metrics)
        .where(Checkpoint.job_id == job_id)
        .order_by(Checkpoint.id)
    ).all()
    last = {r.id for r in rows[-retention.keep_last :]} if retention.keep_last else set()
    sign = 1.0 if retention.mode == "min" else -1.0
    ranked = sorted(
        (
            (sign * value, r.id)
            for r in rows
            if (value := _monitor_value(r.metrics, retention.monitor)) is not None
        ),
    )
    best = [cid for _, cid in ranked[: retention.keep_best]]
    # A waiting job that warm-starts from one of these by id keeps it (issue 24).
    keep = last | set(best) | pinned_checkpoint_ids(session, job_id)
    doomed = [r.id for r in rows if r.id not in keep]
    if doomed:
        blobs.delete_files(session, "checkpoint", doomed)
        session.execute(delete(Checkpoint).where(Checkpoint.id.in_(doomed)))
    best_id = best[0] if best else None
    session.execute(
        update(Checkpoint)
        .where(Checkpoint.job_id == job_id)
        .values(is_best=Checkpoint.id == best_id if best_id is not None else False)
    )
    return doomed


def list_checkpoints(
    session: Session, job_id: str, *, after: int | None = None, limit: int | None = None
) -> list[Checkpoint]:
    """Oldest first; keyset pagination on the id."""
    stmt = select(Checkpoint).where(Checkpoint.job_id == job_id)
    if after is not None:
        stmt = stmt.where(Checkpoint.id > after)
    return list(session.scalars(stmt.order_by(Checkpoint.id).limit(limit)))


def get_checkpoint(session: Session, job_id: str, checkpoint_id: int) -> Checkpoint | None:
    return session.scalar(
        select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.id == checkpoint_id)
    )


def latest_checkpoint(session: Session, job_id: str) -> Checkpoint | None:
    return session.scalar(
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id)
        .order_by(Checkpoint.id.desc())
        .limit(1)
    )


def file_ref(checkpoint_id: int, kind: Kind) -> blobs.BlobRef:
    return blobs.BlobRef("checkpoint", checkpoint_id, kind)


def iter_file(session: Session, checkpoint_id: int, kind: Kind) -> Iterator[bytes]:
    """The file, one chunk row per query: memory stays at one chunk."""
    try:
        yield from blobs.iter_chunks(session, file_ref(checkpoint_id, kind))
    except blobs.BlobMissing:  # deleted by retention mid-read
        raise LookupError(f"checkpoint {checkpoint_id} was deleted while being read") from None


def stream_file(factory: sessionmaker[Session], checkpoint_id: int, kind: Kind) -> Iterator[bytes]:
    """The file for a download, one short session per chunk (see ``blobs.stream``)."""
    try:
        yield from blobs.stream(factory, file_ref(checkpoint_id, kind))
    except blobs.BlobMissing:
        raise LookupError(f"checkpoint {checkpoint_id} was deleted while being read") from None


def read_file(session: Session, checkpoint_id: int, kind: Kind) -> bytes:
    return b"".join(iter_file(session, checkpoint_id, kind))

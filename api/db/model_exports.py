"""A job's exported model in the SQL store: one row per job, its files as 1 MiB chunk rows.

Two files per export, each chunked like checkpoints: ``bundle`` (a zip of
``model.onnx`` and ``model.json``) and ``onnx`` (the graph alone), so that both
downloads have a Content-Length and a sha256 known before the first byte. A
failed export is a row too (``status='failed'`` and the ``error`` a user reads
on the job). A retried job's new export replaces the old one. Callers own the
transaction: nothing here commits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    delete,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from api.db import jobs as jobs_repo
from api.db.models import Base, utcnow

CHUNK_BYTES = 1 << 20
FileKind = Literal["bundle", "onnx"]
READY, FAILED = "ready", "failed"


class ModelExport(Base):
    __tablename__ = "model_exports"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # ready | failed
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # model.json (None for a failed export).
    model_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    bundle_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    bundle_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    onnx_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    onnx_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelExportChunk(Base):
    __tablename__ = "model_export_chunks"

    job_id: Mapped[str] = mapped_column(
        ForeignKey("model_exports.job_id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # bundle | onnx
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


def _clear(session: Session, job_id: str) -> None:
    session.execute(delete(ModelExportChunk).where(ModelExportChunk.job_id == job_id))
    session.execute(delete(ModelExport).where(ModelExport.job_id == job_id))


def save_export(
    session: Session,
    job_id: str,
    attempt: int,
    *,
    bundle: bytes,
    onnx: bytes,
    metadata: dict[str, Any],
    chunk_bytes: int = CHUNK_BYTES,
) -> ModelExport:
    """Store a ready export of the current attempt (``StaleAttempt`` when fenced off)."""
    _clear(session, job_id)
    row = ModelExport(
        job_id=job_id,
        attempt=attempt,
        status=READY,
        model_metadata=metadata,
        bundle_bytes=len(bundle),
        bundle_sha256=hashlib.sha256(bundle).hexdigest(),
        onnx_bytes=len(onnx),
        onnx_sha256=hashlib.sha256(onnx).hexdigest(),
    )
    session.add(row)
    session.flush()
    for kind, blob in (("bundle", bundle), ("onnx", onnx)):
        for seq, off in enumerate(range(0, max(len(blob), 1), chunk_bytes)):
            data = blob[off : off + chunk_bytes]
            chunk = {"job_id": job_id, "kind": kind, "seq": seq, "data": data}
            session.execute(insert(ModelExportChunk), [chunk])  # one row per statement
    jobs_repo.fence(session, job_id, attempt)  # after the chunks, as checkpoints do
    return row


def save_failure(session: Session, job_id: str, attempt: int, error: str) -> ModelExport:
    """Record why the job has no export; its status is left as it is."""
    _clear(session, job_id)
    row = ModelExport(job_id=job_id, attempt=attempt, status=FAILED, error=error)
    session.add(row)
    jobs_repo.fence(session, job_id, attempt)
    return row


def get_export(session: Session, job_id: str) -> ModelExport | None:
    return session.get(ModelExport, job_id)


def exports_of(session: Session, job_ids: list[str]) -> dict[str, ModelExport]:
    if not job_ids:
        return {}
    rows = session.scalars(select(ModelExport).where(ModelExport.job_id.in_(job_ids)))
    return {r.job_id: r for r in rows}


def chunk_seqs(session: Session, job_id: str, kind: FileKind) -> list[int]:
    return list(
        session.scalars(
            select(ModelExportChunk.seq)
            .where(ModelExportChunk.job_id == job_id, ModelExportChunk.kind == kind)
            .order_by(ModelExportChunk.seq)
        )
    )


def read_chunk(session: Session, job_id: str, kind: FileKind, seq: int) -> bytes | None:
    data = session.scalar(
        select(ModelExportChunk.data).where(
            ModelExportChunk.job_id == job_id,
            ModelExportChunk.kind == kind,
            ModelExportChunk.seq == seq,
        )
    )
    return None if data is None else bytes(data)


def iter_file(session: Session, job_id: str, kind: FileKind) -> Iterator[bytes]:
    for seq in chunk_seqs(session, job_id, kind):
        data = read_chunk(session, job_id, kind, seq)
        if data is None:
            raise LookupError(f"the export of job {job_id} was replaced while being read")
        yield data


def read_file(session: Session, job_id: str, kind: FileKind) -> bytes:
    return b"".join(iter_file(session, job_id, kind))

"""A job's exported model in the SQL store: one row per job, its files in the blob store.

Two files per export, blobs owned by the export row: ``bundle`` (a zip of
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

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from api.db import blobs
from api.db.models import Base, utcnow
from api.ledger import repository as jobs_repo
from api.ledger.models import Job

CHUNK_BYTES = blobs.CHUNK_BYTES
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


def _clear(session: Session, job_id: str) -> None:
    blobs.delete_files(session, "model_export", [job_id])
    session.execute(delete(ModelExport).where(ModelExport.job_id == job_id))


def file_ref(job_id: str, kind: FileKind) -> blobs.BlobRef:
    return blobs.BlobRef("model_export", job_id, kind)


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
    team_id = session.scalar(select(Job.team_id).where(Job.id == job_id))
    if team_id is None:  # the job was deleted: nothing of the attempt is written
        raise jobs_repo.StaleAttempt(job_id)
    files: tuple[tuple[FileKind, bytes], ...] = (("bundle", bundle), ("onnx", onnx))
    for kind, data in files:
        blobs.write(session, file_ref(job_id, kind), team_id, data, chunk_bytes=chunk_bytes)
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


def iter_file(session: Session, job_id: str, kind: FileKind) -> Iterator[bytes]:
    try:
        yield from blobs.iter_chunks(session, file_ref(job_id, kind))
    except blobs.BlobMissing:
        raise LookupError(f"the export of job {job_id} was replaced while being read") from None


def stream_file(factory: sessionmaker[Session], job_id: str, kind: FileKind) -> Iterator[bytes]:
    """The file for a download, one short session per chunk (see ``blobs.stream``)."""
    try:
        yield from blobs.stream(factory, file_ref(job_id, kind))
    except blobs.BlobMissing:  # replaced by a retry's export mid-download: cut the body short
        raise LookupError(f"the export of job {job_id} was replaced during its download") from None


def read_file(session: Session, job_id: str, kind: FileKind) -> bytes:
    return b"".join(iter_file(session, job_id, kind))

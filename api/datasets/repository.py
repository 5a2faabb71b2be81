"""Uploaded datasets: one row of metadata plus the normalised content in the blob store.

Imports no FastAPI (the worker reads datasets through this module). The
content is stored already validated and normalised (a pickle-free ``.npz``
written by :mod:`api.datasets.codec`); ``stored_sha256`` lets a reader check
that the chunks it joined are the bytes that were written. Callers own the
transaction: nothing here commits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from api.db import blobs
from api.db.models import Base, new_id, utcnow
from api.db.pages import newest_first
from api.ledger.models import Job

CHUNK_BYTES = blobs.CHUNK_BYTES
ACTIVE_JOB_STATUSES = ("queued", "running")


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (
        Index("ix_datasets_team_created", "team_id", "created_at", "id"),
        # The same content with the same parsing options is the same dataset (per team).
        Index("uq_datasets_team_content", "team_id", "sha256", "options_hash", unique=True),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    created_by_key: Mapped[str | None] = mapped_column(String(32), default=None)
    name: Mapped[str] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))  # of the uploaded file, as sent
    options_hash: Mapped[str] = mapped_column(String(64))  # of the resolved parse options
    size_bytes: Mapped[int] = mapped_column(BigInteger)  # the uploaded file
    stored_bytes: Mapped[int] = mapped_column(BigInteger)  # the normalised content
    stored_sha256: Mapped[str] = mapped_column(String(64))
    n_chunks: Mapped[int] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(16))
    modality: Mapped[str] = mapped_column(String(16))
    n_samples: Mapped[int] = mapped_column(BigInteger)
    # DatasetInfo-compatible facts plus class names/counts, feature names, target summary.
    info: Mapped[dict[str, Any]] = mapped_column(JSON)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    notes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def content_ref(dataset_id: str) -> blobs.BlobRef:
    return blobs.BlobRef("dataset", dataset_id, "content")


def find_by_content(
    session: Session, team_id: str, sha256: str, options_hash: str
) -> Dataset | None:
    return session.scalar(
        select(Dataset).where(
            Dataset.team_id == team_id,
            Dataset.sha256 == sha256,
            Dataset.options_hash == options_hash,
        )
    )


def create_dataset(
    session: Session,
    *,
    content: bytes | Iterable[bytes],
    stored_bytes: int | None = None,
    **fields: Any,
) -> Dataset:
    """Insert the row and its chunks (flushed, not committed). ``content`` may be chunks (a
    file being read) when ``stored_bytes`` gives their total."""
    if stored_bytes is None:
        assert isinstance(content, bytes)
        stored_bytes = len(content)
    n_chunks = -(-stored_bytes // CHUNK_BYTES)
    dataset = Dataset(n_chunks=n_chunks, stored_bytes=stored_bytes, **fields)
    session.add(dataset)
    session.flush()
    blobs.write(session, content_ref(dataset.id), dataset.team_id, content)
    return dataset


def get_dataset(
    session: Session, dataset_id: str, team_id: str, *, lock: str | None = None
) -> Dataset | None:
    """The team's dataset, or None (another team's dataset is None too).

    ``lock="share"`` (a job being created on it) and ``lock="update"`` (a delete)
    serialise the two on PostgreSQL, so a job can never be queued on a dataset
    that a concurrent delete removes. SQLite ignores them (it has one writer).
    """
    stmt = select(Dataset).where(Dataset.id == dataset_id, Dataset.team_id == team_id)
    if lock is not None:
        stmt = stmt.with_for_update(read=lock == "share")
    return session.scalar(stmt)


def list_datasets(
    session: Session, team_id: str, *, limit: int, after: tuple[datetime, str] | None = None
) -> Sequence[Dataset]:
    """Newest first; ``after`` is the (created_at, id) of the previous page's last row."""
    stmt = select(Dataset).where(Dataset.team_id == team_id)
    return session.scalars(newest_first(stmt, Dataset, after, limit)).all()


def active_jobs_using(session: Session, dataset: Dataset) -> list[str]:
    """Ids of the team's queued or running jobs whose spec names this dataset."""
    source_id = Job.spec[("dataset", "source", "dataset_id")].as_string()
    stmt = (
        select(Job.id)
        .where(
            Job.team_id == dataset.team_id,
            Job.status.in_(ACTIVE_JOB_STATUSES),
            source_id == dataset.id,
        )
        .order_by(Job.created_at)
        .limit(10)
    )
    return list(session.scalars(stmt).all())


def delete_dataset(session: Session, dataset: Dataset) -> None:
    blobs.delete_files(session, "dataset", [dataset.id])
    session.delete(dataset)
    session.flush()


class CorruptDataset(Exception):
    """The stored chunks do not add up to the bytes that were written."""


def read_content(session: Session, dataset: Dataset) -> bytes:
    """The normalised content, checked against its size and sha256."""
    parts = blobs.read_all(session, content_ref(dataset.id))
    content = b"".join(parts)
    if (
        len(parts) != dataset.n_chunks
        or len(content) != dataset.stored_bytes
        or hashlib.sha256(content).hexdigest() != dataset.stored_sha256
    ):
        raise CorruptDataset(f"dataset {dataset.id}: stored content does not match its checksum")
    return content

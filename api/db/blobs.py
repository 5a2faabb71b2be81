"""The blob store: every stored file (checkpoint weights and resume state, model export
bundles and graphs, dataset content) as ~1 MiB rows of one chunk table.

One repository for the three owners: write a stream, read a stream (one chunk per query,
or one short session per chunk for a download), delete, bytes per team. It is the one
seam where an object store could later plug in. A chunk row names its owner through one
of three foreign keys (``ON DELETE CASCADE``), so deleting a job, a checkpoint, an export
or a dataset still removes its files in the same statement. The team is written on every
chunk: the storage quota is one indexed sum. Imports no FastAPI and no domain package;
callers own the transaction: nothing here commits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from api.db.models import Base

CHUNK_BYTES = 1 << 20
Owner = Literal["checkpoint", "model_export", "dataset"]
OWNERS: tuple[Owner, ...] = ("checkpoint", "model_export", "dataset")


class BlobChunk(Base):
    __tablename__ = "blob_chunks"
    __table_args__ = (
        # One per owner: the lookup of a file's chunks and the cascade of its owner's delete.
        Index("uq_blob_chunks_checkpoint", "checkpoint_id", "file", "seq", unique=True),
        Index("uq_blob_chunks_model_export", "model_export_job_id", "file", "seq", unique=True),
        Index("uq_blob_chunks_dataset", "dataset_id", "file", "seq", unique=True),
        Index("ix_blob_chunks_team_owner", "team_id", "owner"),
        CheckConstraint(
            "(owner = 'checkpoint' AND checkpoint_id IS NOT NULL"
            " AND model_export_job_id IS NULL AND dataset_id IS NULL)"
            " OR (owner = 'model_export' AND model_export_job_id IS NOT NULL"
            " AND checkpoint_id IS NULL AND dataset_id IS NULL)"
            " OR (owner = 'dataset' AND dataset_id IS NOT NULL"
            " AND checkpoint_id IS NULL AND model_export_job_id IS NULL)",
            name="ck_blob_chunks_one_owner",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    owner: Mapped[str] = mapped_column(String(16))  # checkpoint | model_export | dataset
    checkpoint_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("checkpoints.id", ondelete="CASCADE"),
        default=None,
    )
    model_export_job_id: Mapped[str | None] = mapped_column(
        ForeignKey("model_exports.job_id", ondelete="CASCADE"), default=None
    )
    dataset_id: Mapped[str | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), default=None
    )
    file: Mapped[str] = mapped_column(String(8))  # weights | resume | bundle | onnx | content
    seq: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


_OWNER_COLUMN = {
    "checkpoint": BlobChunk.checkpoint_id,
    "model_export": BlobChunk.model_export_job_id,
    "dataset": BlobChunk.dataset_id,
}


@dataclass(frozen=True)
class BlobRef:
    """One stored file: its owner (a checkpoint id, an export's job id, a dataset id) and
    which of the owner's files (``weights``, ``resume``, ``bundle``, ``onnx``, ``content``)."""

    owner: Owner
    owner_id: int | str
    file: str

    def where(self) -> list[ColumnElement[bool]]:
        return [_OWNER_COLUMN[self.owner] == self.owner_id, BlobChunk.file == self.file]


@dataclass(frozen=True)
class Written:
    size_bytes: int
    sha256: str
    chunks: int


class BlobMissing(LookupError):
    """A chunk of the file is gone: its owner was deleted or replaced while it was read."""


def _rechunk(stream: bytes | Iterable[bytes], chunk_bytes: int) -> Iterator[bytes]:
    if isinstance(stream, bytes | bytearray | memoryview):
        data = memoryview(stream)
        for off in range(0, len(data), chunk_bytes):
            yield bytes(data[off : off + chunk_bytes])
        return
    buffer = bytearray()
    for piece in stream:
        buffer += piece
        while len(buffer) >= chunk_bytes:
            yield bytes(buffer[:chunk_bytes])
            del buffer[:chunk_bytes]
    if buffer:
        yield bytes(buffer)


def write(
    session: Session,
    ref: BlobRef,
    team_id: str,
    stream: bytes | Iterable[bytes],
    *,
    chunk_bytes: int = CHUNK_BYTES,
) -> Written:
    """Store the file as chunk rows, one row per statement (never a statement the size of
    the whole file). An empty file is no row. Returns its size, sha256 and chunk count."""
    digest, size, count = hashlib.sha256(), 0, 0
    owner = {"team_id": team_id, "owner": ref.owner, _OWNER_COLUMN[ref.owner].key: ref.owner_id}
    for data in _rechunk(stream, chunk_bytes):
        row = owner | {"file": ref.file, "seq": count, "data": data}
        session.execute(insert(BlobChunk), [row])
        digest.update(data)
        size, count = size + len(data), count + 1
    return Written(size_bytes=size, sha256=digest.hexdigest(), chunks=count)


def chunk_seqs(session: Session, ref: BlobRef) -> list[int]:
    stmt = select(BlobChunk.seq).where(*ref.where()).order_by(BlobChunk.seq)
    return list(session.scalars(stmt))


def read_chunk(session: Session, ref: BlobRef, seq: int) -> bytes | None:
    data = session.scalar(select(BlobChunk.data).where(*ref.where(), BlobChunk.seq == seq))
    return None if data is None else bytes(data)


def iter_chunks(session: Session, ref: BlobRef) -> Iterator[bytes]:
    """The file, one chunk row per query: memory stays at one chunk."""
    for seq in chunk_seqs(session, ref):
        data = read_chunk(session, ref, seq)
        if data is None:
            raise BlobMissing(f"{ref.owner} {ref.owner_id}: its {ref.file} file is gone")
        yield data


def stream(factory: sessionmaker[Session], ref: BlobRef) -> Iterator[bytes]:
    """The file for a download: one short session per chunk, so a client that is slow to
    take a chunk never holds a pooled connection (issue 18)."""
    with factory() as session:
        seqs = chunk_seqs(session, ref)
    for seq in seqs:
        with factory() as session:
            data = read_chunk(session, ref, seq)
        if data is None:
            raise BlobMissing(f"{ref.owner} {ref.owner_id}: its {ref.file} file is gone")
        yield data


def read(session: Session, ref: BlobRef) -> bytes:
    return b"".join(iter_chunks(session, ref))


def read_all(session: Session, ref: BlobRef) -> list[bytes]:
    """Every chunk in one query (a worker loading a dataset whole)."""
    stmt = select(BlobChunk.data).where(*ref.where()).order_by(BlobChunk.seq)
    return [bytes(d) for d in session.scalars(stmt)]


def delete_files(session: Session, owner: Owner, owner_ids: Sequence[int | str]) -> None:
    """Every file of these owners (their rows' cascades would too; this is explicit)."""
    if owner_ids:
        session.execute(delete(BlobChunk).where(_OWNER_COLUMN[owner].in_(owner_ids)))


@dataclass(frozen=True)
class StorageUsage:
    """What the storage quota counts: checkpoints and datasets (model exports are not)."""

    checkpoint_bytes: int
    dataset_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.checkpoint_bytes + self.dataset_bytes


def usage(session: Session, team_id: str) -> StorageUsage:
    stored = bytes_per_team(session, team_id)
    return StorageUsage(stored["checkpoint"], stored["dataset"])


def bytes_per_team(session: Session, team_id: str) -> dict[Owner, int]:
    """The team's stored bytes by owner kind (0 for a kind it stores nothing of)."""
    stmt = (
        select(BlobChunk.owner, func.coalesce(func.sum(func.length(BlobChunk.data)), 0))
        .where(BlobChunk.team_id == team_id)
        .group_by(BlobChunk.owner)
    )
    found = {str(owner): int(total) for owner, total in session.execute(stmt)}
    return {owner: found.get(owner, 0) for owner in OWNERS}

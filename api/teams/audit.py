"""The audit log: append-only; who (key, team), what (action, resource), when, outcome.

Secrets never reach it: a request is identified by its key *id* only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, delete, insert, select, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from api.db.models import Base, table, utcnow


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_team_id_id", "team_id", "id"),
        Index("ix_audit_log_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    key_id: Mapped[str | None] = mapped_column(String(32))
    team_id: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))  # the HTTP method
    resource: Mapped[str] = mapped_column(String(500))  # the path
    outcome: Mapped[int] = mapped_column(Integer)  # the HTTP status
    client: Mapped[str | None] = mapped_column(String(64))
    # Anonymous 401s from one client within a window are one row counting them all.
    repeats: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))


def record(
    session: Session,
    *,
    key_id: str | None,
    team_id: str | None,
    action: str,
    resource: str,
    outcome: int,
    client: str | None,
) -> None:
    # A Core INSERT, now: every mutation writes one, and a unit-of-work flush of a plain
    # append costs more than the row (issue 16).
    session.execute(
        insert(table(AuditEntry)),
        {
            "key_id": key_id,
            "team_id": team_id,
            "action": action,
            "resource": resource[:500],
            "outcome": outcome,
            "client": client,
        },
    )


def record_returning_id(
    session: Session,
    *,
    action: str,
    resource: str,
    outcome: int,
    client: str | None,
) -> int:
    """An anonymous row (no key, no team); its id, to count later repeats onto it."""
    row = AuditEntry(
        key_id=None, team_id=None, action=action, resource=resource[:500], outcome=outcome,
        client=client,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row.id


def add_repeats(session: Session, entry_id: int, count: int) -> None:
    session.execute(
        update(AuditEntry)
        .where(AuditEntry.id == entry_id)
        .values(repeats=AuditEntry.repeats + count)
    )


def prune(session: Session, older_than: datetime, batch: int = 10_000) -> int:
    """Delete up to ``batch`` rows older than ``older_than`` (the retention); how many."""
    ids = list(
        session.scalars(select(AuditEntry.id).where(AuditEntry.at < older_than).limit(batch))
    )
    if ids:
        session.execute(delete(AuditEntry).where(AuditEntry.id.in_(ids)))
    return len(ids)


def entries(
    session: Session,
    *,
    team_id: str | None,
    before_id: int | None,
    limit: int,
) -> list[AuditEntry]:
    stmt = select(AuditEntry)
    if team_id is not None:
        stmt = stmt.where(AuditEntry.team_id == team_id)
    if before_id is not None:
        stmt = stmt.where(AuditEntry.id < before_id)
    return list(session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit)))

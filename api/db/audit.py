"""The audit log: append-only; who (key, team), what (action, resource), when, outcome.

Secrets never reach it: a request is identified by its key *id* only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from api.db.models import Base, utcnow


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_team_id_id", "team_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    key_id: Mapped[str | None] = mapped_column(String(32))
    team_id: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))  # the HTTP method
    resource: Mapped[str] = mapped_column(String(500))  # the path
    outcome: Mapped[int] = mapped_column(Integer)  # the HTTP status
    client: Mapped[str | None] = mapped_column(String(64))


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
    session.add(
        AuditEntry(
            key_id=key_id,
            team_id=team_id,
            action=action,
            resource=resource[:500],
            outcome=outcome,
            client=client,
        )
    )


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

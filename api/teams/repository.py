"""Teams and API keys. A key is ``tf_<key id>_<secret>``; only sha256(secret) is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from api.db.models import utcnow
from api.teams.models import ApiKey, Team

DEFAULT_TEAM = "default"
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    key_id: str
    team_id: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def get_or_create_team(session: Session, name: str) -> Team:
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        team = Team(name=name)
        session.add(team)
        session.flush()
    return team


def create_api_key(
    session: Session,
    team: Team,
    role: str,
    *,
    name: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Returns the row and the raw key; the raw key is never stored or shown again."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        id=key_id,
        team_id=team.id,
        role=role,
        secret_hash=_hash(secret),
        name=name,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, f"tf_{key_id}_{secret}"


def count_keys(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(ApiKey)) or 0


_KEY_CHECK = select(
    ApiKey.secret_hash,
    ApiKey.team_id,
    ApiKey.role,
    ApiKey.expires_at,
    ApiKey.revoked_at,
    ApiKey.last_used_at,
)


def authenticate(session: Session, raw_key: str) -> Principal | None:
    """The key's principal, or None for a malformed, unknown, revoked or expired key.

    When ``last_used_at`` is due (once a minute) it is updated in the session's
    transaction: the caller commits (``require_principal`` does, when
    ``last_used_written(session)``). Every request runs this, so it is one Core
    SELECT of the columns it needs, not an ORM load.
    """
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != "tf" or not parts[1] or not parts[2]:
        return None
    key_id = parts[1]
    row = session.execute(_KEY_CHECK.where(ApiKey.id == key_id)).one_or_none()
    # Hash and compare even for an unknown id, so timing does not reveal which ids exist.
    expected = row.secret_hash if row is not None else "0" * 64
    if not hmac.compare_digest(expected, _hash(parts[2])) or row is None:
        return None
    now = utcnow()
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    # Recorded to the minute: a write on every request would contend with the workers.
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
        session.info[_LAST_USED_WRITTEN] = True
    return Principal(key_id=key_id, team_id=row.team_id, role=row.role)


_LAST_USED_WRITTEN = "trainforge.last_used_written"


def last_used_written(session: Session) -> bool:
    """Whether ``authenticate`` wrote ``last_used_at`` in this session (and not since)."""
    return bool(session.info.pop(_LAST_USED_WRITTEN, False))


def key_is_active(session: Session, key_id: str) -> bool:
    """Whether the key still authenticates (not revoked, not expired): a stream re-checks."""
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    return row.expires_at is None or row.expires_at > utcnow()


def list_teams(session: Session) -> list[Team]:
    return list(session.scalars(select(Team).order_by(Team.name)))


def list_keys(session: Session, team_id: str | None) -> list[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.created_at)
    if team_id is not None:
        stmt = stmt.where(ApiKey.team_id == team_id)
    return list(session.scalars(stmt))


class LastAdminKey(Exception):
    """Revoking this key would leave no usable admin key (nobody could manage keys again)."""


def _other_active_admins(session: Session, key_id: str) -> int:
    # FOR UPDATE (PostgreSQL): two concurrent revocations of the last two admin keys
    # serialise here, and the second sees the first one's revocation.
    rows = session.execute(
        select(ApiKey.id, ApiKey.expires_at)
        .where(ApiKey.role == "admin", ApiKey.revoked_at.is_(None), ApiKey.id != key_id)
        .with_for_update()
    ).all()
    now = utcnow()
    return sum(1 for _, expires in rows if expires is None or expires > now)


def revoke_key(session: Session, key_id: str) -> ApiKey | None:
    """Revoke the key (None: no such key); raises LastAdminKey for the last admin key."""
    key = session.get(ApiKey, key_id)
    if key is not None and key.revoked_at is None:
        if key.role == "admin" and _other_active_admins(session, key.id) == 0:
            raise LastAdminKey(key_id)
        key.revoked_at = utcnow()
    return key

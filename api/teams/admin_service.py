"""``trainforge admin``: teams, quotas and keys, straight against the database.

Listings print a header row and tab-separated columns; ``create-key`` prints the key
alone on stdout (scripts capture it). A mistake is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.blobs import usage
from api.db.models import utcnow
from api.db.session import session_factory
from api.settings import get_settings
from api.teams.models import ApiKey, Team
from api.teams.repository import LastAdminKey, create_api_key, list_teams, revoke_key

QUOTAS = ("max_running_jobs", "max_queued_jobs", "max_storage_bytes")
MAXIMUM = {"max_running_jobs": 10_000, "max_queued_jobs": 1_000_000, "max_storage_bytes": 2**62}
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^(\d+)\s*([kmgt]i?b?|b)?$", re.IGNORECASE)
_POWERS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


class UsageError(Exception):
    """Something the operator typed: one line on stderr, exit code 2."""


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``30d``, ``2w``."""
    match = _DURATION.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"--expires-in {text!r}: use a positive number with s, m, h, d or w")
    return timedelta(seconds=int(match.group(1)) * _SECONDS[match.group(2)])


def parse_limit(option: str, text: str, *, size: bool = False) -> int | None:
    """A quota value: ``none`` lifts it; sizes take ``50GB`` (10^9) or ``50GiB`` (2^30)."""
    raw = text.strip().lower()
    if raw in ("none", "unlimited"):
        return None
    match = _SIZE.match(raw) if size else re.match(r"^(\d+)()$", raw)
    if not match:
        hint = "a number of bytes (50GB, 500MiB)" if size else "a whole number"
        raise UsageError(f"{option} {text!r}: use {hint} or 'none'")
    unit = (match.group(2) or "").lower()
    factor = _POWERS[unit[:1]] if "i" not in unit else 2 ** (10 * "kmgt".index(unit[0]) + 10)
    value = int(match.group(1)) * factor
    highest = MAXIMUM[option.removeprefix("--").replace("-", "_")]
    if not 1 <= value <= highest:
        raise UsageError(f"{option} must be between 1 and {highest:,} (or 'none')")
    return value


def _show(value: int | None) -> str:
    return "-" if value is None else str(value)


def _table(header: list[str], rows: list[list[str]]) -> None:
    print("\t".join(header))
    for row in rows:
        print("\t".join(row))


def _team(session: Session, name: str) -> Team:
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        raise UsageError(f"no team {name!r}; `trainforge admin list-teams` shows them")
    return team


def create_team(session: Session, args: argparse.Namespace) -> None:
    if session.scalar(select(Team).where(Team.name == args.name)) is not None:
        raise UsageError(f"a team named {args.name!r} exists; `trainforge admin set-quota` "
                         "changes its quotas")  # fmt: skip
    team = Team(name=args.name)
    for field in QUOTAS:
        text = getattr(args, field, None)
        if text is not None:
            setattr(team, field, parse_limit(_flag(field), text, size=field == QUOTAS[2]))
    session.add(team)
    session.commit()
    print(team.id)


def set_quota(session: Session, args: argparse.Namespace) -> None:
    team = _team(session, args.team)
    given = [f for f in QUOTAS if getattr(args, f) is not None]
    if not given:
        raise UsageError("set-quota needs at least one of " + ", ".join(map(_flag, QUOTAS)))
    for field in given:
        setattr(team, field, parse_limit(_flag(field), getattr(args, field),
                                         size=field == QUOTAS[2]))  # fmt: skip
    session.commit()
    _list_teams(session, [team])


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _list_teams(session: Session, teams: list[Team]) -> None:
    rows = []
    for team in teams:
        stored = usage(session, team.id)
        rows.append([team.id, team.name, _show(team.max_running_jobs),
                     _show(team.max_queued_jobs), _show(team.max_storage_bytes),
                     str(stored.total_bytes)])  # fmt: skip
    _table(["ID", "NAME", "MAX_RUNNING", "MAX_QUEUED", "MAX_STORAGE_BYTES", "STORED_BYTES"], rows)


def create_key(session: Session, args: argparse.Namespace) -> None:
    owner = _team(session, args.team)
    expires = utcnow() + parse_duration(args.expires_in) if args.expires_in else None
    _, raw = create_api_key(session, owner, args.role, name=args.name, expires_at=expires)
    session.commit()
    print(raw)  # the key alone on stdout: scripts capture it


def revoke(session: Session, args: argparse.Namespace) -> None:
    try:
        key = revoke_key(session, args.key_id)
    except LastAdminKey as exc:
        raise UsageError("this is the last active admin key: create another admin key "
                         "first, then revoke this one") from exc  # fmt: skip
    if key is None:
        raise UsageError(f"no key {args.key_id!r}; `trainforge admin list-keys` shows them")
    session.commit()


def list_keys(session: Session, _: argparse.Namespace) -> None:
    rows = []
    now = utcnow()
    for key, team_name in session.execute(
        select(ApiKey, Team.name).join(Team, Team.id == ApiKey.team_id).order_by(ApiKey.created_at)
    ):
        expired = key.expires_at is not None and key.expires_at <= now
        state = "revoked" if key.revoked_at else "expired" if expired else "active"
        expires = key.expires_at.isoformat(timespec="seconds") if key.expires_at else "-"
        created = key.created_at.isoformat(timespec="seconds")
        rows.append([key.id, team_name, key.role, state, key.name or "-", created, expires])
    _table(["ID", "TEAM", "ROLE", "STATE", "NAME", "CREATED", "EXPIRES"], rows)


COMMANDS = {
    "create-team": create_team,
    "list-teams": lambda s, _: _list_teams(s, list_teams(s)),
    "set-quota": set_quota,
    "create-key": create_key,
    "list-keys": list_keys,
    "revoke-key": revoke,
}


def run_cli(args: argparse.Namespace) -> int:
    factory = session_factory(get_settings().resolved_database_url)
    with factory() as session:
        try:
            COMMANDS[args.admin_command](session, args)
        except UsageError as exc:
            print(f"trainforge admin {args.admin_command}: {exc}", file=sys.stderr)
            return 2
    return 0

"""``trainforge admin``: teams and keys, straight against the database."""

from __future__ import annotations

import argparse
import sys

from sqlalchemy import select

from api.db.keys import create_api_key, get_or_create_team
from api.db.models import ApiKey, Team, utcnow
from api.db.session import session_factory
from api.settings import get_settings


def run_cli(args: argparse.Namespace) -> int:
    factory = session_factory(get_settings().resolved_database_url)
    with factory() as session:
        if args.admin_command == "create-team":
            team = get_or_create_team(session, args.name)
            session.commit()
            print(team.id)
            return 0
        if args.admin_command == "create-key":
            owner = session.scalar(select(Team).where(Team.name == args.team))
            if owner is None:
                print(
                    f"no team {args.team!r}; create it with `trainforge admin create-team`",
                    file=sys.stderr,
                )
                return 2
            _, raw = create_api_key(session, owner, args.role)
            session.commit()
            print(raw)  # the key alone on stdout: scripts capture it
            return 0
        if args.admin_command == "revoke-key":
            key = session.get(ApiKey, args.key_id)
            if key is None:
                print(f"no key {args.key_id!r}", file=sys.stderr)
                return 2
            key.revoked_at = key.revoked_at or utcnow()
            session.commit()
            return 0
        rows = session.execute(
            select(ApiKey, Team.name)
            .join(Team, Team.id == ApiKey.team_id)
            .order_by(ApiKey.created_at)
        )
        for key, team_name in rows:
            state = "revoked" if key.revoked_at else "active"
            print(f"{key.id}\t{team_name}\t{key.role}\t{state}\t{key.created_at.isoformat()}")
        return 0

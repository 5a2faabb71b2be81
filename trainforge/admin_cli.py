"""The arguments of ``trainforge admin`` (the work is in api/db/admin.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

QUOTA_HELP = {
    "max_running_jobs": "jobs of the team that may run at once ('none': no limit)",
    "max_queued_jobs": "queued jobs the team may have; more is a 429 ('none': no limit)",
    "max_storage_bytes": "bytes of checkpoints and datasets the team may store, e.g. 50GB or "
    "500GiB; an upload past it is a 507, a checkpoint past it fails its job ('none': no limit)",
}


def _quota_options(parser: argparse.ArgumentParser) -> None:
    for field, text in QUOTA_HELP.items():
        parser.add_argument("--" + field.replace("_", "-"), dest=field, metavar="N", help=text)


def add_admin_parser(sub: Any, func: Callable[[argparse.Namespace], int]) -> None:
    """``sub``: the top-level subparsers; ``func`` runs the chosen admin command."""
    adm = sub.add_parser(
        "admin",
        help="teams, quotas and API keys, straight against the database",
        description="Teams, quotas and API keys, straight against the database that "
        "TRAINFORGE_DATABASE_URL (or SQLite in TRAINFORGE_HOME) names. The same is "
        "available over HTTP under /v1/admin with an admin key.",
    )
    adm_sub = adm.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = adm_sub.add_parser(name, help=text, description=text)
        return parser

    team = command("create-team", "create a team (an error if the name exists); prints its id")
    team.add_argument("name", help="letters, digits, '_', '.', '-'")
    _quota_options(team)
    command("list-teams", "every team: quotas and bytes stored (a header row, tab-separated)")
    quota = command("set-quota", "change a team's quotas; an option left out keeps its value")
    quota.add_argument("team", help="the team's name")
    _quota_options(quota)
    key = command("create-key", "create an API key; prints the key alone (shown only once)")
    key.add_argument("--team", required=True, help="the team's name")
    key.add_argument("--role", choices=["member", "admin"], default="member",
                     help="admin: manages teams and keys (default: member)")  # fmt: skip
    key.add_argument("--name", help="a label to recognise the key by in list-keys")
    key.add_argument(
        "--expires-in",
        metavar="DURATION",
        help="the key stops working after this long: 90s, 15m, 12h, 30d, 2w (default: never)",
    )
    command("list-keys", "every key, never its secret (a header row, tab-separated)")
    revoke = command(
        "revoke-key", "revoke a key at once (the last active admin key cannot be revoked)"
    )
    revoke.add_argument("key_id", help="the key's id, from list-keys")
    adm.set_defaults(func=func)

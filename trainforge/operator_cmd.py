"""The operator verbs (up, api, worker, db upgrade, admin) on the same typer app as the user
verbs: one framework, one help style. Each command fills the same ``argparse.Namespace``
the work in trainforge_server/operator.py (and api/teams/admin_service.py) has always taken, and
imports the server only when it runs, so a client-only install (the ``trainforge``
distribution without ``trainforge-server``) lists them and says what is missing."""

from __future__ import annotations

import argparse
import sys
from typing import Annotated, Any

import typer

from trainforge.admin_cli import QUOTA_HELP

PANEL = "Operator commands (need `pip install 'trainforge[server]'`)"
SERVER_MODULES = frozenset(
    ("trainforge_server", "api", "worker", "ml", "migrations", "fastapi", "sqlalchemy",
     "celery", "torch", "uvicorn", "alembic", "pydantic_settings")
)  # fmt: skip
HOST = Annotated[str, typer.Option(help="The address to listen on.")]
PORT = Annotated[int, typer.Option(min=1, max=65535, help="The port.")]


def _run(verb: str, func_name: str, **values: Any) -> None:
    """Run ``trainforge_server.operator.<func_name>`` (through its settings check)."""
    try:
        from trainforge_server import operator as cli
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_MODULES:
            raise
        print(
            f"trainforge {verb}: this install is the client only (no {exc.name}); "
            "the server is `pip install 'trainforge[server]'`.",
            file=sys.stderr,
        )
        raise typer.Exit(2) from None
    raise typer.Exit(cli.run_operator(verb, getattr(cli, func_name), argparse.Namespace(**values)))


def up(host: HOST = "127.0.0.1", port: PORT = 8000) -> None:
    """Embedded mode: API + one worker, SQLite, no servers (Ctrl-C stops both)."""
    _run("up", "cmd_up", host=host, port=port)


def api(
    host: HOST = "0.0.0.0",
    port: PORT = 8000,
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            metavar="N",
            help="API processes on the port (1-64; default TRAINFORGE_API_PROCESSES, 1).",
        ),
    ] = None,
) -> None:
    """The HTTP API alone."""
    _run("api", "cmd_api", host=host, port=port, processes=processes)


def worker(
    queues: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated; default: TRAINFORGE_QUEUE, plus TRAINFORGE_GPU_QUEUE when "
            "this process sees a GPU (a GPU queue is dropped on a machine without one)."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve this worker's Prometheus /metrics (default: off).")
    ] = None,
) -> None:
    """One Celery worker (one per GPU)."""
    _run("worker", "cmd_worker", queues=queues, metrics_port=metrics_port)


db = typer.Typer(help="Database migrations.", no_args_is_help=True)


@db.command()
def upgrade() -> None:
    """Migrate the database to the latest schema."""
    _run("db", "cmd_db_upgrade")


admin = typer.Typer(
    help="Teams, quotas and API keys, straight against the database that "
    "TRAINFORGE_DATABASE_URL (or SQLite in TRAINFORGE_HOME) names. The same is available "
    "over HTTP under /v1/admin with an admin key.",
    no_args_is_help=True,
)


def _quota(field: str) -> Any:
    return typer.Option("--" + field.replace("_", "-"), metavar="N", help=QUOTA_HELP[field])


def _admin(command: str, **values: Any) -> None:
    _run("admin", "cmd_admin", admin_command=command, **values)


RUNNING = Annotated[str | None, _quota("max_running_jobs")]
QUEUED = Annotated[str | None, _quota("max_queued_jobs")]
STORAGE = Annotated[str | None, _quota("max_storage_bytes")]


@admin.command("create-team")
def create_team(
    name: Annotated[str, typer.Argument(help="Letters, digits, '_', '.', '-'.")],
    max_running_jobs: RUNNING = None,
    max_queued_jobs: QUEUED = None,
    max_storage_bytes: STORAGE = None,
) -> None:
    """Create a team (an error if the name exists); prints its id."""
    _admin("create-team", name=name, max_running_jobs=max_running_jobs,
           max_queued_jobs=max_queued_jobs, max_storage_bytes=max_storage_bytes)  # fmt: skip


@admin.command("list-teams")
def list_teams() -> None:
    """Every team: quotas and bytes stored (a header row, tab-separated)."""
    _admin("list-teams")


@admin.command("set-quota")
def set_quota(
    team: Annotated[str, typer.Argument(help="The team's name.")],
    max_running_jobs: RUNNING = None,
    max_queued_jobs: QUEUED = None,
    max_storage_bytes: STORAGE = None,
) -> None:
    """Change a team's quotas; an option left out keeps its value."""
    _admin("set-quota", team=team, max_running_jobs=max_running_jobs,
           max_queued_jobs=max_queued_jobs, max_storage_bytes=max_storage_bytes)  # fmt: skip


@admin.command("create-key")
def create_key(
    team: Annotated[str, typer.Option(help="The team's name.")],
    role: Annotated[str, typer.Option(help="member, or admin: manages teams and keys.")] = "member",
    name: Annotated[str | None, typer.Option(help="A label to recognise the key by.")] = None,
    expires_in: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="The key stops working after this long: 90s, 15m, 12h, 30d, 2w (default: never).",
        ),
    ] = None,
) -> None:
    """Create an API key; prints the key alone (shown only once)."""
    if role not in ("member", "admin"):
        raise typer.BadParameter(f"{role!r} is not member or admin", param_hint="--role")
    _admin("create-key", team=team, role=role, name=name, expires_in=expires_in)


@admin.command("list-keys")
def list_keys() -> None:
    """Every key, never its secret (a header row, tab-separated)."""
    _admin("list-keys")


@admin.command("revoke-key")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id, from list-keys.")],
) -> None:
    """Revoke a key at once (the last active admin key cannot be revoked)."""
    _admin("revoke-key", key_id=key_id)


def register(app: typer.Typer) -> None:
    for func in (up, api, worker):
        app.command(rich_help_panel=PANEL)(func)
    app.add_typer(db, name="db", rich_help_panel=PANEL)
    app.add_typer(admin, name="admin", rich_help_panel=PANEL)

"""``trainforge delete JOB``: remove an ended job and everything it stored (issue 17)."""

from __future__ import annotations

from typing import Annotated

import typer

from trainforge.client.output import JOB_ARG, JSON_OPT, confirm, connect, print_json


def delete(
    job_id: JOB_ARG,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (on a terminal).")] = False,
    as_json: JSON_OPT = False,
) -> None:
    """Delete an ended job (succeeded, failed or canceled) with its metrics, events, logs
    and checkpoints; a queued or running job is refused (cancel it first). Asks first on a
    terminal."""
    confirm(f"delete job {job_id} and everything it stored?", yes)
    connect().request("DELETE", f"/v1/jobs/{job_id}")
    if as_json:
        print_json({"id": job_id, "deleted": True})
    else:
        print(f"job {job_id} deleted")


def register(app: typer.Typer) -> None:
    app.command()(delete)

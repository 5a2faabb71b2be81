"""``trainforge delete JOB``: remove an ended job and everything it stored (issue 17)."""

from __future__ import annotations

import typer

from trainforge.client.output import JOB_ARG, connect


def delete(job_id: JOB_ARG) -> None:
    """Delete an ended job (succeeded, failed or canceled) with its metrics, events, logs
    and checkpoints; a queued or running job is refused (cancel it first)."""
    connect().request("DELETE", f"/v1/jobs/{job_id}")
    print(f"job {job_id} deleted")


def register(app: typer.Typer) -> None:
    app.command()(delete)

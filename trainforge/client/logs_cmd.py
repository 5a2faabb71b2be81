"""logs: what the engine and the worker said while running a job (issue 15)."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from trainforge.client.http import Api
from trainforge.client.output import JOB_ARG, connect, stdout

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
PAGE = 1000
POLL_SECONDS = 1.0


def _page(api: Api, job_id: str, after: int) -> dict[str, Any]:
    data: dict[str, Any] = api.get_json(
        f"/v1/jobs/{job_id}/logs", params={"after": after, "limit": PAGE}
    )
    return data


def _show(line: dict[str, Any], as_json: bool) -> None:
    if as_json:  # JSON Lines: one object a line, as they arrive
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        return
    style = {"warning": "yellow", "error": "red"}.get(line["level"], "")
    at = line["at"][11:19]  # HH:MM:SS (UTC) of the ISO timestamp
    text = f"{at} {line['source']:<6} {line['message']}"
    stdout().print(text, style=style or None, markup=False, highlight=False)


def logs(
    job_id: JOB_ARG,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the job ends.")
    ] = False,
    after: Annotated[int, typer.Option("--after", min=0, help="Only lines after this id.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """A job's log: start (device, threads), resume, each epoch, early stopping, learning-rate
    reductions, checkpoints, and how it ended. The server keeps each job's newest lines."""
    api = connect()
    ending = False
    try:
        while True:
            page = _page(api, job_id, after)
            for line in page["items"]:
                _show(line, as_json)
            after = int(page["last_id"])
            if len(page["items"]) == PAGE:
                continue  # more is waiting
            if not follow or ending:
                return
            # One more pass after the job ended: its last words (the outcome) come with it.
            ending = api.get_json(f"/v1/jobs/{job_id}")["status"] in TERMINAL
            if not ending:
                time.sleep(POLL_SECONDS)
    finally:
        api.close()


def register(app: typer.Typer) -> None:
    app.command()(logs)

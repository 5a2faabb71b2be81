"""follow: a job's live view from its SSE stream, reconnecting with Last-Event-ID."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import httpx
import typer

from trainforge.client.errors import (
    EXIT_DETACHED,
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    CliError,
)
from trainforge.client.follow_view import FollowState, JsonView, LiveView, PlainView, View, fmt
from trainforge.client.http import Api
from trainforge.client.output import JOB_ARG, connect
from trainforge.client.sse import parse

READ_TIMEOUT = 45.0  # the server sends a keep-alive every 15 s
GIVE_UP_SECONDS = 120.0  # reconnecting this long without success: exit 3


def _view(state: FollowState, as_json: bool) -> View:
    if as_json:
        return JsonView(state)
    return LiveView(state) if sys.stdout.isatty() else PlainView(state)


def _stream_once(api: Api, state: FollowState, view: View, last_id: int | None) -> int | None:
    """Read the stream until it ends or drops; returns the last event id seen."""
    headers = {"Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    with api.stream(f"/v1/jobs/{state.job_id}/events", headers, READ_TIMEOUT) as response:
        view.note("")
        for event in parse(response.iter_lines()):
            if event.id is not None:
                last_id = event.id
            view.show(event, state.apply(event))
            if state.end is not None:
                break
    return last_id


def follow_job(api: Api, job_id: str, *, as_json: bool = False) -> int:
    """Follow until the job ends: 0 succeeded, 1 failed or canceled, 130 on Ctrl-C (detached)."""
    state = FollowState.from_job(api.get_json(f"/v1/jobs/{job_id}"))
    view = _view(state, as_json)
    last_id: int | None = None
    failing_since: float | None = None
    delay = 0.5
    try:
        with view:
            while state.end is None:
                try:
                    seen = _stream_once(api, state, view, last_id)
                    if seen != last_id:
                        failing_since, delay = None, 0.5
                    last_id = seen
                    if state.end is not None:
                        break
                    reason = "the stream ended early"
                except httpx.HTTPError as exc:
                    reason = str(exc) or type(exc).__name__
                except CliError as exc:
                    if exc.http_status is None or exc.http_status < 500:
                        raise
                    reason = exc.message
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > GIVE_UP_SECONDS:
                    raise CliError(
                        EXIT_UNREACHABLE,
                        f"lost the connection to {api.config.url} ({reason}); the job keeps "
                        f"running. Re-attach: trainforge follow {job_id}",
                    )
                view.note(f"connection lost ({reason}); reconnecting...")
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
    except KeyboardInterrupt:
        print(
            f"\ndetached from job {job_id}; it keeps running. "
            f"Re-attach: trainforge follow {job_id}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_DETACHED
    end = state.end or {}
    if not as_json:
        print(_final_line_reconnecting(api, job_id, end), flush=True)
    return EXIT_OK if end.get("status") == "succeeded" else EXIT_JOB_FAILED


def _final_line_reconnecting(api: Api, job_id: str, end: dict[str, Any]) -> str:
    """The final line reads the job and its checkpoints: the server may have gone away
    just after the stream's `end` (a restart), so this waits for it as the stream does."""
    failing_since, delay = time.monotonic(), 0.5
    while True:
        try:
            return final_line(api, job_id, end)
        except CliError as exc:
            unreachable = exc.code == EXIT_UNREACHABLE or (exc.http_status or 0) >= 500
            if not unreachable or time.monotonic() - failing_since > GIVE_UP_SECONDS:
                raise
            print(f"connection lost ({exc.message}); reconnecting...", file=sys.stderr, flush=True)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def final_line(api: Api, job_id: str, end: dict[str, Any]) -> str:
    status, reason = end.get("status"), end.get("status_reason")
    line = f"job {job_id} {status}" + (f" ({reason})" if reason else "")
    job = api.get_json(f"/v1/jobs/{job_id}")
    if job.get("error"):
        return f"{line}: {job['error']}"
    monitor = ((job.get("spec") or {}).get("checkpointing") or {}).get("monitor")
    progress = job.get("progress") or {}
    line += f" after {progress.get('epoch')} epochs"
    best = _best_checkpoint(api, job_id)
    if best is not None and monitor in (best.get("metrics") or {}):
        line += (
            f"; best {monitor} {fmt(best['metrics'][monitor])} at epoch "
            f"{int(best['epoch']) + 1} (checkpoint {best['id']})"
        )
    return line


def _best_checkpoint(api: Api, job_id: str) -> dict[str, Any] | None:
    items = api.get_json(f"/v1/jobs/{job_id}/checkpoints", params={"limit": 1000}).get("items", [])
    best = [c for c in items if c.get("is_best")]
    return best[-1] if best else None


def follow(
    job_id: JOB_ARG,
    as_json: Annotated[
        bool, typer.Option("--json", help="Every event as a JSON line {id, event, data}.")
    ] = False,
) -> int:
    """Follow a job live until it ends (exit code = its outcome); Ctrl-C detaches."""
    return follow_job(connect(), job_id, as_json=as_json)


def register(app: typer.Typer) -> None:
    app.command()(follow)

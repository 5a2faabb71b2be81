"""follow: a job's live view from its events (the SDK's ``Job.events``, which reconnects with
Last-Event-ID)."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from trainforge.client.errors import (
    EXIT_DETACHED,
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    CliError,
)
from trainforge.client.follow_view import FollowState, JsonView, LiveView, PlainView, View, fmt
from trainforge.client.http import Api, cli_error
from trainforge.client.output import JOB_ARG, connect
from trainforge.sdk.errors import TrainforgeError, Unreachable
from trainforge.sdk.events import kind_of
from trainforge.sdk.jobs import Job
from trainforge.sdk.sse import Event

GIVE_UP_SECONDS = 120.0  # reconnecting this long without an event: exit 3


def _view(state: FollowState, as_json: bool) -> View:
    if as_json:
        return JsonView(state)
    return LiveView(state) if sys.stdout.isatty() else PlainView(state)


def follow_job(api: Api, job_id: str, *, as_json: bool = False) -> int:
    """Follow until the job ends: 0 succeeded, 1 failed or canceled, 130 on Ctrl-C (detached).
    The events and their reconnects are the SDK's (``Job.events``): one loop in the code base;
    a reconnect is shown as a note until the next event."""
    state = FollowState.from_job(api.get_json(f"/v1/jobs/{job_id}"))
    view = _view(state, as_json)
    noted = False

    def reconnecting(reason: str) -> None:
        nonlocal noted
        view.note(f"connection lost ({reason}); reconnecting...")
        noted = True

    events = Job(api.http, {"id": state.job_id}).events(
        reconnect_for=GIVE_UP_SECONDS, on_reconnect=reconnecting
    )
    try:
        with view:
            for typed in events:
                if noted:
                    view.note("")
                    noted = False
                event = Event(kind_of(typed), typed.data, typed.id)
                view.show(event, state.apply(event))
                if state.end is not None:
                    break
    except Unreachable as exc:
        raise CliError(
            EXIT_UNREACHABLE,
            f"lost the connection to {api.config.url} ({exc.reason or exc.message}); the job "
            f"keeps running. Re-attach: trainforge follow {job_id}",
        ) from None
    except TrainforgeError as exc:  # a 4xx: the job went away, the key was revoked
        raise cli_error(api.config, exc) from None
    except KeyboardInterrupt:
        print(
            f"\ndetached from job {job_id}; it keeps running. "
            f"Re-attach: trainforge follow {job_id}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_DETACHED
    finally:
        events.close()
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

"""GET /v1/jobs/{job_id}/events: a job's status changes, metric batches and checkpoints, live.

Server-Sent Events read from the ``events`` table, which the writers fill in
the same transaction as the change itself. Polling the table (one query per
``POLL_SECONDS`` and process for all its streams, see api/jobs/event_hub.py) works
the same on SQLite and PostgreSQL and across API replicas; every event's ``id``
is its row id, so a client that reconnects with ``Last-Event-ID`` gets exactly
what it missed. After the job's terminal status
the server sends ``end`` and closes the stream.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from typing import Annotated, Any, cast

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy.orm import Session, sessionmaker

from api.deps import SessionDep
from api.joblogs import repository as joblogs
from api.joblogs.schemas import log_event_payload
from api.jobs.schemas import JobEvent
from api.ledger import events as repo
from api.ledger.access import get_job_or_404
from api.ledger.repository import TERMINAL
from api.ledger.series import points_in_ranges
from api.problems import Problem
from api.teams.auth import PrincipalDep
from api.teams.repository import key_is_active

POLL_SECONDS = 0.25  # the event hub's tick: one query per tick for all streams
# A stream reads its page about this often (0.5-1.5x), news or not: a backstop to the
# hub, which wakes it within a tick of an event of its job (late commits included). At
# 10 s, 200 dashboards cost the API 0.38 core instead of 0.50 (issue 28, 13: bench/RESULTS.md).
FALLBACK_SECONDS = 10.0
KEEPALIVE_SECONDS = 15.0  # a comment line when idle, so proxies keep the connection
PAGE = 100  # events per query (a metrics event reads its points too)
RECONNECT_MS = 1000  # the client's reconnection delay (the SSE `retry` field)
# A stream re-reads its key this often and closes once it is revoked or gone: a backstop
# for what the hub's revocation window missed (the hub closes it within a tick).
KEY_CHECK_SECONDS = 30.0

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or invalid API key."},
    404: {"model": Problem, "description": "No such job (or another team's)."},
    422: {"model": Problem, "description": "Invalid input; `errors` lists every problem."},
}

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=_ERRORS)


def _job_id_or_404(job_id: str, session: SessionDep, principal: PrincipalDep) -> str:
    # A dependency, so a 404 is answered before the stream (and its 200) starts.
    job = get_job_or_404(session, principal, job_id)
    # The request's session would otherwise hold a connection for the stream's life.
    session.close()
    return job.id


def _sse(**fields: Any) -> JobEvent:
    # FastAPI writes a ServerSentEvent as it is; the generator's annotation
    # (JobEvent) is what OpenAPI documents as each event's `data`.
    return cast(JobEvent, ServerSentEvent(**fields))


def _data(session: Session, job_id: str, kind: str, payload: dict[str, Any]) -> str:
    """The event's `data`: its payload; a metrics event's points are read now."""
    if kind == repo.METRICS:
        found = points_in_ranges(session, job_id, payload.get("ranges", {}))
        payload = {
            "attempt": payload.get("attempt"),
            "series": [
                {
                    "name": name,
                    "points": [
                        {"step": step, "epoch": epoch, "value": repo.json_float(value)}
                        for step, epoch, value in rows
                    ],
                }
                for name, rows in found.items()
            ],
        }
    elif kind == joblogs.LOG_EVENT:  # the lines are read now, as a metrics event's points
        payload = log_event_payload(session, job_id, payload)
    return json.dumps({"kind": kind, **payload}, allow_nan=False)


def _page(factory: sessionmaker[Session], job_id: str, after: int) -> list[tuple[int, str, str]]:
    with factory() as session:
        return [
            (e.id, e.kind, _data(session, job_id, e.kind, e.payload))
            for e in repo.events_after(session, job_id, after, PAGE)
        ]


def _key_active(factory: sessionmaker[Session], key_id: str) -> bool:
    with factory() as session:
        return key_is_active(session, key_id)


def _status_at(factory: sessionmaker[Session], job_id: str, event_id: int) -> dict[str, Any] | None:
    with factory() as session:
        event = repo.last_status_at_or_before(session, job_id, event_id)
        return dict(event.payload) if event is not None else None


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "`text/event-stream`: events `status`, `metrics`, `checkpoint`, "
            "`progress` (throttled, within an epoch), then `end`; each `data` is a JSON "
            "`JobEvent`, each `id` resumable.",
        }
    },
)
async def stream_job_events(
    request: Request,
    job_id: Annotated[str, Depends(_job_id_or_404)],
    last_event_id: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, le=2**63 - 1, description="Resume after this id."),
    ] = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=2**63 - 1, description="As `Last-Event-ID`, for clients without headers."),
    ] = None,
) -> AsyncIterator[JobEvent]:
    """Follow a job live: status changes, metric batches, checkpoints, progress, then `end`."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    cursor = last_event_id if last_event_id is not None else (after or 0)
    # Where the client left off may already be after the end (a reconnect).
    status = await anyio.to_thread.run_sync(_status_at, factory, job_id, cursor) if cursor else None
    yield _sse(comment=f"job {job_id}", retry=RECONNECT_MS)
    idle = 0.0
    key_id: str = request.state.principal.key_id
    # Streams opened together must not read together: each one's key checks and fallback
    # reads are spread (issue 28, 13: 200 streams opened at once read 200 pages in the same
    # instant every 2 s, and the job list waited behind them for a second).
    key_checked = anyio.current_time() - random.uniform(0, KEY_CHECK_SECONDS)
    hub = request.app.state.event_hub
    while True:
        if hub.is_revoked(key_id):  # seen by the hub within a tick (issue 28, 9)
            return
        if anyio.current_time() - key_checked >= KEY_CHECK_SECONDS:
            # A revoked (or expired) key stops receiving within seconds: the stream
            # closes, and the client's reconnection gets 401.
            if not await anyio.to_thread.run_sync(_key_active, factory, key_id):
                return
            key_checked = anyio.current_time()
        page = await anyio.to_thread.run_sync(_page, factory, job_id, cursor)
        for event_id, kind, data in page:
            cursor = event_id
            if kind == repo.STATUS:
                status = json.loads(data)
            yield _sse(event=kind, id=str(event_id), raw_data=data)
        if len(page) == PAGE:
            continue  # more is waiting: no sleep
        if status is not None and status["to_status"] in TERMINAL:
            # Its id is the last event's: reconnecting with it yields `end` again.
            end = {"kind": "end", "status": status["to_status"], "status_reason": status["reason"]}
            yield _sse(event="end", id=str(cursor), raw_data=json.dumps(end))
            return
        if page:
            idle = 0.0
        # The process's one poller (api/jobs/event_hub.py) says when this job has news.
        waited = anyio.current_time()
        await hub.wait(job_id, cursor, FALLBACK_SECONDS * random.uniform(0.5, 1.5))
        if hub.is_revoked(key_id):  # seen by the hub within a tick (issue 28, 9)
            return
        idle += anyio.current_time() - waited
        if idle >= KEEPALIVE_SECONDS:
            idle = 0.0
            yield _sse(comment="keep-alive")

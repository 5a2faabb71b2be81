"""/v1/sweeps: thin endpoints; the request boundary commits, then publishes."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, cast

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy.orm import Session, sessionmaker

from api.deps import QueueDep, SessionDep, SettingsDep
from api.problems import Problem
from api.queue import JobQueue
from api.storage.schemas import StorageProblem
from api.sweeps import repository as repo
from api.sweeps import service
from api.sweeps.schemas import SweepCreate, SweepEventRead, SweepPage, SweepRead, TrialPage
from api.sweeps.trials import NewTrial
from api.teams.auth import PrincipalDep

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
PAGE = 200
RECONNECT_MS = 1000

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or invalid API key."},
    404: {"model": Problem, "description": "No such sweep (or another team's)."},
    422: {"model": Problem, "description": "Invalid input; `errors` lists every problem."},
}

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"], responses=_ERRORS)


def _commit_then_publish(session: Session, queue: JobQueue, new: list[NewTrial]) -> None:
    session.commit()
    for trial in new:  # after the commit; a lost doorbell is rung again by the reconciler
        try:
            queue.publish(trial.job_id, trial.queue)
        except Exception:
            log.warning(
                "could not publish trial %s; the reconciler will", trial.job_id, exc_info=True
            )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SweepRead,
    responses={
        507: {
            "model": StorageProblem,
            "description": "The team is at or over its storage quota (`storage`: its figures).",
        }
    },
)
def create_sweep(
    body: SweepCreate,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
    principal: PrincipalDep,
) -> SweepRead:
    """Validate the whole search space, store the sweep, queue its first trials."""
    sweep, new, warnings = service.create_sweep(session, settings, principal, body)
    _commit_then_publish(session, queue, new)
    response.headers["Location"] = f"/v1/sweeps/{sweep.id}"
    return service.to_read(session, sweep, warnings)


@router.get("", response_model=SweepPage)
def list_sweeps(
    session: SessionDep,
    principal: PrincipalDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SweepPage:
    """The team's sweeps, newest first."""
    return service.list_page(session, principal, cursor, limit)


@router.get("/{sweep_id}", response_model=SweepRead)
def get_sweep(sweep_id: str, session: SessionDep, principal: PrincipalDep) -> SweepRead:
    """Status, trials by status and reason, the best trial, epochs trained."""
    return service.to_read(session, service.get_or_404(session, principal, sweep_id))


@router.get("/{sweep_id}/trials", response_model=TrialPage)
def list_sweep_trials(sweep_id: str, session: SessionDep, principal: PrincipalDep) -> TrialPage:
    """The leaderboard: trials by objective, best first, with their parameters."""
    return service.leaderboard(session, service.get_or_404(session, principal, sweep_id))


@router.post(
    "/{sweep_id}/cancel",
    response_model=SweepRead,
    responses={409: {"model": Problem, "description": "The sweep has already ended."}},
)
def cancel_sweep(sweep_id: str, session: SessionDep, principal: PrincipalDep) -> SweepRead:
    """Cancel queued trials at once, ask running ones to stop; the sweep ends `canceled`."""
    sweep = service.cancel(session, principal, sweep_id)
    session.commit()
    return service.to_read(session, sweep)


def _sweep_id_or_404(sweep_id: str, session: SessionDep, principal: PrincipalDep) -> str:
    sweep = service.get_or_404(session, principal, sweep_id)
    session.close()  # the stream reads with short sessions of its own
    return sweep.id


def _sse(**fields: Any) -> SweepEventRead:
    return cast(SweepEventRead, ServerSentEvent(**fields))


def _page(factory: sessionmaker[Session], sweep_id: str, after: int) -> list[tuple[int, str, str]]:
    with factory() as session:
        return [
            (e.id, e.kind, json.dumps({"kind": e.kind, **e.payload}))
            for e in repo.events_after(session, sweep_id, after, PAGE)
        ]


def _ended(factory: sessionmaker[Session], sweep_id: str, event_id: int) -> bool:
    with factory() as session:
        return repo.has_ended_at_or_before(session, sweep_id, event_id)


@router.get(
    "/{sweep_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "`text/event-stream`: `trial_created`, `trial_ended`, `new_best`, "
            "`sweep_ended`, then `end`; each `data` a JSON `SweepEventRead`, each `id` resumable.",
        }
    },
)
async def stream_sweep_events(
    request: Request,
    sweep_id: Annotated[str, Depends(_sweep_id_or_404)],
    last_event_id: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, description="Resume after this event id."),
    ] = None,
    after: Annotated[
        int | None,
        Query(ge=0, description="As `Last-Event-ID`, for clients that cannot set headers."),
    ] = None,
) -> AsyncIterator[SweepEventRead]:
    """Follow a sweep live: trials created and ended, each new best, then `end`."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    cursor = last_event_id if last_event_id is not None else (after or 0)
    ended = await anyio.to_thread.run_sync(_ended, factory, sweep_id, cursor) if cursor else False
    yield _sse(comment=f"sweep {sweep_id}", retry=RECONNECT_MS)
    idle = 0.0
    while True:
        page = await anyio.to_thread.run_sync(_page, factory, sweep_id, cursor)
        for event_id, kind, data in page:
            cursor = event_id
            ended = ended or kind == repo.SWEEP_ENDED
            yield _sse(event=kind, id=str(event_id), raw_data=data)
        if len(page) == PAGE:
            continue
        if ended:
            yield _sse(event="end", id=str(cursor), raw_data=json.dumps({"kind": "end"}))
            return
        idle = 0.0 if page else idle
        await anyio.sleep(POLL_SECONDS)
        idle += POLL_SECONDS
        if idle >= KEEPALIVE_SECONDS:
            idle = 0.0
            yield _sse(comment="keep-alive")

"""GET /v1/jobs/{job_id}/logs: what the engine and the worker said while running a job."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import SessionDep
from api.joblogs import repository as repo
from api.joblogs.schemas import JobLogPage, line_read
from api.ledger.access import get_job_or_404
from api.problems import Problem
from api.teams.auth import PrincipalDep

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or invalid API key."},
    404: {"model": Problem, "description": "No such job (or another team's)."},
    422: {"model": Problem, "description": "Invalid input; `errors` lists every problem."},
}

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=_ERRORS)


@router.get("/{job_id}/logs", response_model=JobLogPage)
def list_job_logs(
    job_id: str,
    session: SessionDep,
    principal: PrincipalDep,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="Lines after this id (0: from the first).")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many lines.")] = 200,
) -> JobLogPage:
    """A job's log lines, oldest first: start (device, threads), resume, each epoch's
    summary, early stopping, learning-rate reductions, checkpoints, the outcome and its
    error. Each job keeps its newest `TRAINFORGE_JOB_LOG_MAX_LINES` lines."""
    job = get_job_or_404(session, principal, job_id)
    rows = repo.lines_after(session, job.id, after, limit)
    last = rows[-1].id if rows else after
    more = len(rows) == limit
    return JobLogPage(
        items=[line_read(r) for r in rows], last_id=last, next_cursor=str(last) if more else None
    )

"""/v1/jobs: thin endpoints; the request boundary commits, then publishes."""

from __future__ import annotations

import logging
import math
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api import jobs_service as service
from api.db import jobs as repo
from api.deps import PrincipalDep, QueueDep, SessionDep, SettingsDep
from api.problems import Problem, ProblemError
from api.schemas import (
    JobCreate,
    JobPage,
    JobRead,
    JobStatus,
    MetricSeries,
    MetricsRead,
    MetricValue,
)

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or invalid API key."},
    404: {"model": Problem, "description": "No such job (or another team's)."},
    422: {"model": Problem, "description": "Invalid input; `errors` lists every problem."},
}

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=_ERRORS)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobRead)
def create_job(
    body: JobCreate,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
    principal: PrincipalDep,
) -> JobRead:
    """Validate the spec, store the job as `queued`, then queue it."""
    job = service.create_job(session, settings, principal, body)
    session.commit()
    # Only after the commit: a worker must never receive an id it cannot read.
    # If publishing fails the row stays queued and the reconciler re-publishes.
    try:
        queue.publish(job.id, job.queue)
    except Exception:
        log.warning("could not publish job %s; the reconciler will", job.id, exc_info=True)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return service.to_read(session, job)


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    principal: PrincipalDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobPage:
    """The team's jobs, newest first."""
    return service.list_page(session, principal, status.value if status else None, cursor, limit)


@router.get("/{job_id}", response_model=JobRead)
def get_job(job_id: str, session: SessionDep, principal: PrincipalDep) -> JobRead:
    """One job: status, resolved spec, attempt, progress, transitions."""
    return service.to_read(session, service.get_job_or_404(session, principal, job_id))


@router.post(
    "/{job_id}/cancel",
    response_model=JobRead,
    responses={409: {"model": Problem, "description": "The job has already ended."}},
)
def cancel_job(job_id: str, session: SessionDep, principal: PrincipalDep) -> JobRead:
    """Cancel a queued job at once, or ask its worker to stop (within about a second)."""
    job = service.get_job_or_404(session, principal, job_id)
    if job.status in repo.TERMINAL:
        raise ProblemError(409, "Conflict", f"The job is already {job.status}.")
    repo.request_cancel(session, job)
    session.commit()
    return service.to_read(session, job)


def _json_value(value: float | None) -> float | str | None:
    if value is None:
        return "NaN"  # SQLite stores NaN as NULL
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


@router.get("/{job_id}/metrics", response_model=MetricsRead)
def get_job_metrics(
    job_id: str,
    session: SessionDep,
    principal: PrincipalDep,
    name: Annotated[list[str] | None, Query(description="Series to return (repeatable).")] = None,
    since_step: Annotated[int | None, Query(ge=0)] = None,
) -> MetricsRead:
    """Metric series of a job, each point at its global optimizer step."""
    job = service.get_job_or_404(session, principal, job_id)
    series: dict[str, list[MetricValue]] = {}
    for p in repo.read_metrics(session, job.id, name, since_step):
        series.setdefault(p.name, []).append(
            MetricValue(step=p.step, epoch=p.epoch, value=_json_value(p.value))
        )
    return MetricsRead(series=[MetricSeries(name=n, points=pts) for n, pts in series.items()])

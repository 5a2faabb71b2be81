"""/v1/jobs: thin endpoints; the request boundary commits, then publishes."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy.orm import Session

from api import etag
from api.deps import QueueDep, SessionDep, SettingsDep
from api.jobs import list_service as joblist
from api.jobs import service
from api.jobs.list_schemas import JobSummaryPage
from api.jobs.schemas import (
    JobCreate,
    JobOrDryRun,
    JobRead,
    JobStatus,
    MetricSeries,
    MetricsRead,
    MetricValue,
    SpecValidateRequest,
)
from api.jobs.specs_router import validate_job_spec
from api.ledger import repository as repo
from api.ledger.access import get_job_or_404
from api.ledger.events import json_float
from api.ledger.models import Job
from api.ledger.series import read_series
from api.problems import FieldProblem, Problem, ProblemError
from api.queue import JobQueue
from api.storage.schemas import StorageProblem
from api.teams import audit_middleware as audit
from api.teams.auth import PrincipalDep

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or invalid API key."},
    404: {"model": Problem, "description": "No such job (or another team's)."},
    422: {"model": Problem, "description": "Invalid input; `errors` lists every problem."},
}

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=_ERRORS)


def _only_query_params(request: Request, known: set[str]) -> None:
    """A misspelt query parameter (`dryrun=true`) must not create a real job."""
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise ProblemError(
            422,
            "Unprocessable Content",
            f"Unknown query parameter(s): {', '.join(unknown)}.",
            errors=[
                FieldProblem(loc=f"query.{name}", msg="unknown query parameter", type="extra")
                for name in unknown
            ],
        )


# A series name as the engine writes them (loss, val_accuracy, f1_macro, ...): printable,
# no control characters (PostgreSQL refuses a NUL in a string), at most 64 characters (the column).
MetricName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]


async def _create_job_query(request: Request) -> None:
    _only_query_params(request, {"dry_run"})


def _commit_then_publish(session: Session, queue: JobQueue, job: Job) -> None:
    session.commit()
    # Only after the commit: a worker must never receive an id it cannot read.
    # If publishing fails the row stays queued and the reconciler re-publishes.
    try:
        queue.publish(job.id, job.queue)
    except Exception:  # the ledger has the job; the doorbell can ring later
        log.warning("could not publish job %s; the reconciler will", job.id, exc_info=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=JobRead,
    responses={
        200: {
            # Two answers, told apart by their fields (`id` / `plan`): a JobRead for a
            # replay, a SpecValidation for a dry run (issue 28, 3).
            "model": JobOrDryRun,
            "description": "A replay of an Idempotency-Key: the original job (`JobRead`). "
            "With `dry_run=true`: the resolved spec and its plan (a `SpecValidation`, as "
            "`POST /v1/specs/validate`); nothing is stored or queued.",
        },
        429: {
            "model": Problem,
            "description": "The team is at its queued-jobs quota (`max_queued_jobs`); "
            "`Retry-After` says when to try again.",
        },
        507: {
            "model": StorageProblem,
            "description": "The team is at or over its storage quota (`storage`: its figures).",
        },
    },
    dependencies=[Depends(_create_job_query)],
)
def create_job(
    body: JobCreate,
    http: Request,
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            description="Same key and body: the original job (200), not a second one.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        Query(description="Validate only: answer the resolved spec and its plan (200)."),
    ] = False,
) -> Response:
    """Validate the spec, store the job as `queued`, then queue it."""
    if dry_run:
        request = SpecValidateRequest(spec=body.spec)
        checked = validate_job_spec(request, session, settings, principal)
        return JSONResponse(checked.model_dump(mode="json"), status_code=status.HTTP_200_OK)
    submitted = service.create_job(session, settings, principal, body, idempotency_key)
    job = submitted.job
    location = {"Location": f"/v1/jobs/{job.id}"}
    if not submitted.created:
        return _json(service.to_read(session, job), status.HTTP_200_OK, location)
    audit.record_in(session, http, status.HTTP_201_CREATED)  # committed with the job
    _commit_then_publish(session, queue, job)
    audit.committed(http, status.HTTP_201_CREATED)
    return _json(service.new_job_read(session, submitted), status.HTTP_201_CREATED, location)


def _json(read: JobRead, code: int, headers: dict[str, str]) -> Response:
    # Serialised here, in the endpoint's thread: a returned model would cost FastAPI a
    # second thread hop to validate it again (issue 16).
    return Response(read.model_dump_json(by_alias=True), code, headers, "application/json")


@router.get(
    "",
    response_model=JobSummaryPage,
    responses={200: {"headers": etag.ETAG_HEADER}, **etag.NOT_MODIFIED},
)
def list_jobs(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    team_id: Annotated[
        str | None, Query(max_length=32, description="Admins: list this team's jobs.")
    ] = None,
    sweep_id: Annotated[
        str | None, Query(max_length=32, description="Only the trials of this sweep.")
    ] = None,
    name: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="Only jobs whose name contains this text (case-insensitive).",
        ),
    ] = None,
    id_prefix: Annotated[
        str | None,
        Query(
            pattern="^[0-9a-f]{6,32}$",
            description="Only jobs whose id starts with this (6 to 32 hex digits): how the "
            "CLI resolves a short id.",
        ),
    ] = None,
    if_none_match: Annotated[
        str | None, Header(max_length=2000, description=etag.IF_NONE_MATCH_DESCRIPTION)
    ] = None,
) -> Response:
    """The team's jobs, newest first: a summary of each (the full job: `GET /v1/jobs/{id}`).
    With the ETag of the previous answer in If-None-Match, a 304 while nothing changed."""
    page = joblist.cached_list_page(
        session,
        principal,
        request.app.state.list_cache,
        team_id=team_id,
        status=status.value if status else None,
        name=name,
        sweep_id=sweep_id,
        cursor=cursor,
        limit=limit,
        id_prefix=id_prefix,
    )
    return etag.conditional_json(page.body, principal.team_id, if_none_match, tag=page.etag)


@router.get(
    "/{job_id}",
    response_model=JobRead,
    responses={200: {"headers": etag.ETAG_HEADER}, **etag.NOT_MODIFIED},
)
def get_job(
    job_id: str,
    session: SessionDep,
    principal: PrincipalDep,
    if_none_match: Annotated[
        str | None, Header(max_length=2000, description=etag.IF_NONE_MATCH_DESCRIPTION)
    ] = None,
) -> Response:
    """One job: status, resolved spec, attempt, progress, transitions. With the ETag of the
    previous answer in If-None-Match, a 304 while nothing changed."""
    read = service.read_job(session, principal, job_id)
    body = read.model_dump_json(by_alias=True).encode()
    return etag.conditional_json(body, principal.team_id, if_none_match)


@router.post(
    "/{job_id}/cancel",
    response_model=JobRead,
    responses={409: {"model": Problem, "description": "The job has already ended."}},
)
def cancel_job(job_id: str, session: SessionDep, principal: PrincipalDep) -> JobRead:
    """Cancel a queued job at once, or ask its worker to stop (within about a second)."""
    job = get_job_or_404(session, principal, job_id)
    if job.status in repo.TERMINAL:
        raise ProblemError(409, "Conflict", f"The job has already ended ({job.status}).")
    repo.request_cancel(session, job)
    session.commit()
    return service.to_read(session, job)


@router.post(
    "/{job_id}/retry",
    response_model=JobRead,
    responses={
        409: {"model": Problem, "description": "Only a failed or canceled job retries."},
        429: {"model": Problem, "description": "The team is at its queued-jobs quota."},
    },
)
def retry_job(
    job_id: str, session: SessionDep, queue: QueueDep, principal: PrincipalDep
) -> JobRead:
    """Queue a failed or canceled job again; its worker resumes from the latest checkpoint."""
    job = service.retry_job(session, principal, job_id)
    _commit_then_publish(session, queue, job)
    return service.to_read(session, job)


@router.get("/{job_id}/metrics", response_model=MetricsRead)
def get_job_metrics(
    job_id: str,
    session: SessionDep,
    principal: PrincipalDep,
    name: Annotated[
        list[MetricName] | None, Query(description="Series to return (repeatable).")
    ] = None,
    since_step: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="Points at this step on.")
    ] = None,
    max_points: Annotated[
        int | None,
        Query(
            ge=4,
            le=100_000,
            description="At most this many points per series: a longer series is "
            "downsampled server-side (M4: per step bucket its first, last, min and max "
            "points), keeping its shape.",
        ),
    ] = None,
) -> MetricsRead:
    """Metric series of a job, each point at its global optimizer step."""
    job = get_job_or_404(session, principal, job_id)
    series = read_series(session, job.id, name, since_step, max_points)
    return MetricsRead(
        series=[
            MetricSeries(
                name=n,
                # Trusted rows: construct without re-validating each point.
                points=[
                    MetricValue.model_construct(step=step, epoch=epoch, value=json_float(value))
                    for step, epoch, value in found.rows
                ],
                downsampled=found.downsampled,
            )
            for n, found in series.items()
        ]
    )

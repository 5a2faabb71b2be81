"""Storage routes: DELETE /v1/jobs/{job_id} and GET /v1/admin/teams/{team_id}."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.deps import SessionDep
from api.problems import Problem
from api.storage import service
from api.storage.schemas import TeamDetail
from api.teams.auth import AdminDep, PrincipalDep

_AUTH: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or invalid API key."},
    422: {"model": Problem, "description": "Invalid input."},
}

jobs_router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=_AUTH)
admin_router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    responses={**_AUTH, 403: {"model": Problem, "description": "Not an admin key."}},
)


@jobs_router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        404: {"model": Problem, "description": "No such job (or another team's)."},
        409: {"model": Problem, "description": "The job is queued or running."},
    },
)
def delete_job(job_id: str, session: SessionDep, principal: PrincipalDep) -> Response:
    """Delete an ended job with its metrics, events, logs and checkpoints (one transaction)."""
    service.delete_job(session, principal, job_id)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@admin_router.get(
    "/teams/{team_id}",
    response_model=TeamDetail,
    responses={404: {"model": Problem, "description": "No such team."}},
)
def get_team(team_id: str, session: SessionDep, admin: AdminDep) -> TeamDetail:
    """A team, its quotas and the bytes it stores (checkpoints and datasets)."""
    return service.team_detail(session, team_id)

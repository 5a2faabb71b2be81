"""/v1/admin: teams, API keys, quotas and the audit log (admin keys only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.deps import SessionDep
from api.problems import Problem, ProblemError
from api.teams import audit
from api.teams import repository as repo
from api.teams.auth import AdminDep
from api.teams.models import ApiKey, Team
from api.teams.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPage,
    ApiKeyRead,
    AuditEntryRead,
    AuditPage,
    TeamCreate,
    TeamPage,
    TeamQuotaUpdate,
    TeamRead,
)

router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    responses={
        401: {"model": Problem, "description": "Missing or invalid API key."},
        403: {"model": Problem, "description": "Not an admin key."},
        422: {"model": Problem, "description": "Invalid input."},
    },
)


def _team_read(team: Team) -> TeamRead:
    return TeamRead.model_validate(team, from_attributes=True)


def _key_read(key: ApiKey) -> ApiKeyRead:
    return ApiKeyRead.model_validate(key, from_attributes=True)


@router.post(
    "/teams",
    status_code=status.HTTP_201_CREATED,
    response_model=TeamRead,
    responses={409: {"model": Problem, "description": "The name is taken."}},
)
def create_team(body: TeamCreate, session: SessionDep, admin: AdminDep) -> TeamRead:
    """Create a team, optionally with quotas."""
    team = Team(
        name=body.name,
        max_running_jobs=body.max_running_jobs,
        max_queued_jobs=body.max_queued_jobs,
        max_storage_bytes=body.max_storage_bytes,
    )
    session.add(team)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ProblemError(409, "Conflict", f"A team named {body.name!r} exists.") from exc
    return _team_read(team)


@router.get("/teams", response_model=TeamPage)
def list_teams(session: SessionDep, admin: AdminDep) -> TeamPage:
    """Every team."""
    return TeamPage(items=[_team_read(t) for t in repo.list_teams(session)])


@router.patch(
    "/teams/{team_id}",
    response_model=TeamRead,
    responses={404: {"model": Problem, "description": "No such team."}},
)
def update_team_quotas(
    team_id: str, body: TeamQuotaUpdate, session: SessionDep, admin: AdminDep
) -> TeamRead:
    """Set a team's quotas; a field left out keeps its value, null lifts the limit."""
    team = session.get(Team, team_id)
    if team is None:
        raise ProblemError(404, "Not found", f"No team {team_id!r}.")
    for name in body.model_fields_set:
        setattr(team, name, getattr(body, name))
    session.commit()
    return _team_read(team)


@router.post(
    "/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses={404: {"model": Problem, "description": "No such team."}},
)
def create_key(
    body: ApiKeyCreate, response: Response, session: SessionDep, admin: AdminDep
) -> ApiKeyCreated:
    """Create an API key; the secret is in this answer only (sent `Cache-Control: no-store`)."""
    response.headers["Cache-Control"] = "no-store"
    team = session.scalar(select(Team).where(Team.name == body.team))
    if team is None:
        raise ProblemError(404, "Not found", f"No team {body.team!r}.")
    row, raw = repo.create_api_key(
        session, team, body.role.value, name=body.name, expires_at=body.expires_at
    )
    session.commit()
    return ApiKeyCreated(**_key_read(row).model_dump(), key=raw)


@router.get("/keys", response_model=ApiKeyPage)
def list_keys(
    session: SessionDep,
    admin: AdminDep,
    team_id: Annotated[str | None, Query(max_length=32)] = None,
) -> ApiKeyPage:
    """Every key (never its secret), optionally of one team."""
    return ApiKeyPage(items=[_key_read(k) for k in repo.list_keys(session, team_id)])


@router.post(
    "/keys/{key_id}/revoke",
    response_model=ApiKeyRead,
    responses={
        404: {"model": Problem, "description": "No such key."},
        409: {"model": Problem, "description": "The last active admin key cannot be revoked."},
    },
)
def revoke_key(key_id: str, session: SessionDep, admin: AdminDep) -> ApiKeyRead:
    """Revoke a key at once; requests with it get 401 from now on.

    The last active admin key cannot be revoked (409): create another admin key first.
    """
    try:
        key = repo.revoke_key(session, key_id)
    except repo.LastAdminKey as exc:
        raise ProblemError(
            409,
            "Conflict",
            "This is the last active admin key: create another admin key, then revoke this one.",
        ) from exc
    if key is None:
        raise ProblemError(404, "Not found", f"No key {key_id!r}.")
    session.commit()
    return _key_read(key)


@router.get("/audit", response_model=AuditPage)
def list_audit(
    session: SessionDep,
    admin: AdminDep,
    team_id: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    """The audit log, newest first."""
    rows = audit.entries(session, team_id=team_id, before_id=cursor, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        items=[AuditEntryRead.model_validate(r, from_attributes=True) for r in rows],
        next_cursor=str(rows[-1].id) if more and rows else None,
    )

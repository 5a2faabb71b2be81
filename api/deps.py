"""FastAPI dependencies as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.db.keys import Principal, authenticate
from api.problems import ProblemError
from api.queue import JobQueue
from api.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    # The request boundary owns the transaction: handlers commit what they mean to keep.
    with request.app.state.session_factory() as session:
        yield session


def get_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.queue
    return queue


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]

_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}
# Declares the scheme in OpenAPI (Swagger UI's Authorize button); auto_error=False so a
# missing key stays our problem+json 401 below, not FastAPI's own error.
bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="ApiKey", description="`Authorization: Bearer <api key>`"
)


def require_principal(
    request: Request,
    session: SessionDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProblemError(
            401, "Unauthorized", "Send `Authorization: Bearer <api key>`.", headers=_UNAUTHORIZED
        )
    principal = authenticate(session, token.strip())
    if principal is None:
        raise ProblemError(
            401,
            "Unauthorized",
            "The API key is invalid, revoked or expired.",
            headers=_UNAUTHORIZED,
        )
    if session.dirty:
        session.commit()  # keeps last_used_at
    request.state.principal = principal  # for the audit log
    return principal


PrincipalDep = Annotated[Principal, Depends(require_principal)]


def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise ProblemError(403, "Forbidden", "This operation needs an admin key.")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]

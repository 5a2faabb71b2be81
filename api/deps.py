"""FastAPI dependencies as ``Annotated`` aliases."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api.db.keys import Principal, authenticate, last_used_written
from api.problems import ProblemError
from api.queue import JobQueue
from api.settings import Settings

log = logging.getLogger(__name__)


async def get_settings(request: Request) -> Settings:  # no I/O: on the loop, no thread hop
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's session. The request boundary owns the transaction: handlers commit
    what they mean to keep.

    Made and closed on the event loop: a session opens no connection before its first
    statement, and closing one that holds none does no I/O. Only a session still inside
    a transaction (a read, a refused request) is closed in a thread. A sync dependency
    costs a thread hop each way, about as much CPU as a query (issue 16).
    """
    session: Session = request.app.state.session_factory()
    try:
        yield session
    finally:
        if session.in_transaction():
            with anyio.CancelScope(shield=True):  # a client that left still frees its connection
                await anyio.to_thread.run_sync(_close, session)
        else:
            _close(session)


def _close(session: Session) -> None:
    """Close, ending the transaction. The answer is decided by now (often already sent):
    a database that went away meanwhile (its ROLLBACK fails) costs the connection, never
    the answer -- it would reach the client as a 500 or a broken stream."""
    try:
        session.close()
    except SQLAlchemyError as exc:
        log.warning("could not end a request's transaction: %s", exc)
        session.invalidate()  # its connection is not trusted again


async def get_queue(request: Request) -> JobQueue:
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
    if last_used_written(session):
        session.commit()  # keeps last_used_at
    request.state.principal = principal  # for the audit log
    return principal


PrincipalDep = Annotated[Principal, Depends(require_principal)]


def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise ProblemError(403, "Forbidden", "This operation needs an admin key.")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]

"""The caller's API key as FastAPI dependencies (a 401 without a valid key, a 403 for an
admin route without an admin key)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import SessionDep
from api.problems import ProblemError
from api.teams.repository import Principal, authenticate, last_used_written

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

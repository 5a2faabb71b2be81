"""Liveness and readiness (no auth: probes and load balancers call these)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from api.deps import QueueDep, SessionDep
from api.problems import Problem
from api.system.schemas import HealthRead
from api.teams.auth import PrincipalDep

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=HealthRead)
async def healthz() -> HealthRead:
    """The process is up."""
    # async: answered on the event loop, never queued behind a busy thread pool.
    return HealthRead(status="ok")


@router.get("/readyz", response_model=HealthRead, responses={503: {"model": HealthRead}})
def readyz(session: SessionDep, queue: QueueDep) -> HealthRead | JSONResponse:
    """The database and the broker are reachable."""
    checks: dict[str, str] = {}
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - report, do not crash
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        queue.ping()
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["broker"] = f"error: {type(exc).__name__}"
    body = HealthRead(
        status="ok" if all(v == "ok" for v in checks.values()) else "unavailable", checks=checks
    )
    if body.status != "ok":
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})
    return body


class VersionRead(BaseModel):
    version: str = Field(description="The server's release (the `trainforge` distribution).")
    api: str = Field("v1", description="The HTTP API's version: the path prefix.")


def server_version() -> str:
    try:
        return version("trainforge")
    except PackageNotFoundError:  # a checkout run without an install
        return "0+unknown"


@router.get(
    "/v1/version",
    response_model=VersionRead,
    responses={401: {"model": Problem, "description": "Missing or invalid API key."}},
)
def get_version(principal: PrincipalDep) -> VersionRead:
    """The server's version: `trainforge --version` warns when its major version differs
    from the client's."""
    return VersionRead(version=server_version())

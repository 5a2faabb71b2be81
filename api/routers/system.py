"""Liveness and readiness (no auth: probes and load balancers call these)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import QueueDep, SessionDep
from api.schemas import HealthRead

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

"""RFC 9457 problem+json for every error the API returns."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.spec_kinds import KIND_TAGS

log = logging.getLogger(__name__)
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout passes
PROBLEM_JSON = "application/problem+json"

# Pydantic puts a discriminated union's tag into the error location
# (spec.optimizer.adam.lr); users wrote spec.optimizer.lr, so drop it.
_UNION_FIELDS = {"source", "model", "init", "optimizer", "schedule", "clipping"}
# A sweep's distributions (api/sweeps): `parameters["optimizer.lr"].low`, not
# `parameters.optimizer.lr.uniform.low`.
_SWEEP_KINDS = {"choice", "grid", "uniform", "log_uniform", "int_uniform"}


class FieldProblem(BaseModel):
    """One invalid input, at its location."""

    loc: str = Field(description="Dotted location, e.g. `spec.schedule.patience`.")
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem detail; every error answer is one (`application/problem+json`)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldProblem] | None = None


class ProblemError(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        errors: Sequence[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.errors = list(errors) if errors is not None else None
        self.headers = headers
        # RFC 9457 extension members, beside the standard ones (e.g. a 507's `storage`).
        self.extensions = dict(extensions or {})


def dotted(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for item in loc:
        if item == "body" and not parts:
            continue
        if parts == ["parameters"] and isinstance(item, str):  # a sweep's dotted spec path
            parts[0] = f'parameters["{item}"]'
            continue
        if len(parts) == 1 and parts[0].startswith("parameters[") and item in _SWEEP_KINDS:
            continue  # the distribution's kind tag
        if parts and parts[-1] in _UNION_FIELDS and isinstance(item, str) and item in KIND_TAGS:
            continue
        parts.append(str(item))
    return ".".join(parts)


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    errors: Sequence[FieldProblem] | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body = Problem(
        title=title,
        status=status,
        detail=detail,
        instance=instance,
        errors=list(errors) if errors is not None else None,
    )
    standard = body.model_dump(exclude_none=True)
    extra = {k: v for k, v in (extensions or {}).items() if k not in standard}
    return JSONResponse(
        {**standard, **extra},
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _validation_errors(errors: Sequence[Any]) -> list[FieldProblem]:
    out = []
    for err in errors:
        msg = str(err.get("msg", "invalid"))
        out.append(
            FieldProblem(
                loc=dotted(err.get("loc", ())), msg=msg, type=str(err.get("type", "value_error"))
            )
        )
    return out


_HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def allowed_methods(request: Request, starlette_allow: str = "") -> list[str]:
    """Every method the API documents at the request's path (HEAD with GET), plus what
    Starlette named (routes outside the OpenAPI document, such as /healthz)."""
    methods = {m.strip().upper() for m in starlette_allow.split(",") if m.strip()}
    path = request.url.path
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods |= {m.upper() for m in operations if m in _HTTP_METHODS}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.title,
            exc.detail,
            errors=exc.errors,
            instance=request.url.path,
            headers=exc.headers,
            extensions=exc.extensions,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc.errors())
        detail = "; ".join(f"{e.loc}: {e.msg}" for e in errors[:5])
        return problem_response(
            422, "Invalid request", detail, errors=errors, instance=request.url.path
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized"}.get(
            exc.status_code, "Error"
        )
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only; a path
            # served by several routes (GET and POST /v1/jobs) allows all of theirs.
            allowed = allowed_methods(request, (headers or {}).get("Allow", ""))
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            detail = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}."
            return problem_response(405, title, detail, instance=request.url.path, headers=headers)
        return problem_response(
            exc.status_code,
            title,
            str(exc.detail),
            instance=request.url.path,
            headers=headers,
        )

    @app.exception_handler(PoolTimeout)
    async def _pool_busy(request: Request, exc: PoolTimeout) -> JSONResponse:
        # Every pooled connection stayed busy for db_pool_timeout_seconds: overload.
        log.warning("no SQL connection free for %s: %s", request.url.path, exc)
        return problem_response(
            503,
            "Service busy",
            "No database connection came free in time; retry shortly.",
            instance=request.url.path,
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(InterfaceError)
    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> JSONResponse:
        # The database going away is the service's problem, not the client's:
        # 503 with Retry-After, never a 500.
        log.warning("database error on %s: %s", request.url.path, exc)
        busy = getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE
        return problem_response(
            503,
            "Service unavailable",
            "The resource is locked by another writer (api_lock_timeout_seconds passed); "
            "retry shortly."
            if busy
            else "The database is unreachable; retry shortly.",
            instance=request.url.path,
            headers={"Retry-After": "5"},
        )

"""/v1/jobs/{job_id}/model (download the export) and /v1/jobs/{job_id}/predict."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from api.deps import SessionDep, SettingsDep
from api.ledger.access import get_job_or_404
from api.predict import service
from api.predict.instances import InstanceErrors
from api.predict.schemas import PredictRequest, PredictResponse
from api.problems import Problem, ProblemError
from api.teams.auth import PrincipalDep

log = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or invalid API key."},
    404: {"model": Problem, "description": "No such job (or another team's)."},
    409: {"model": Problem, "description": "The job has no exported model; `detail` says why."},
    422: {"model": Problem, "description": "Invalid input; `errors` lists every problem."},
}

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=_ERRORS)


def _sessions(request: Request, size: int) -> service.SessionCache:
    cache: service.SessionCache | None = getattr(request.app.state, "predict_sessions", None)
    if cache is None:
        cache = request.app.state.predict_sessions = service.SessionCache(size)
    return cache


def _guarded(
    factory: sessionmaker[Session], job_id: str, kind: Literal["bundle", "onnx"]
) -> Iterator[bytes]:
    try:
        yield from service.stream_file(factory, job_id, kind)
    except LookupError:
        log.warning("the export of job %s changed during its download", job_id)
        raise


@router.get(
    "/{job_id}/model",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
            "description": "The bundle (zip of model.onnx and model.json), or with "
            "`format=onnx` the ONNX graph alone.",
        }
    },
)
def download_model(
    job_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    format: Annotated[Literal["zip", "onnx"], Query(description="zip: the bundle.")] = "zip",
) -> StreamingResponse:
    """The job's exported model, streamed chunk by chunk (sha256 in `X-Checksum-Sha256`)."""
    job = get_job_or_404(session, principal, job_id)
    row = service.ready_export_or_409(session, job)
    if format == "onnx":
        size, sha, kind, name, media = (
            row.onnx_bytes, row.onnx_sha256, "onnx", "model.onnx", "application/octet-stream"
        )  # fmt: skip
    else:
        size, sha, kind, name, media = (
            row.bundle_bytes, row.bundle_sha256, "bundle", f"{job.id}-model.zip", "application/zip"
        )  # fmt: skip
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Content-Length": str(size),
        "ETag": f'"{sha}"',
        "X-Checksum-Sha256": str(sha),
    }
    session.close()  # no pooled connection held while the client downloads
    return StreamingResponse(
        _guarded(request.app.state.session_factory, job.id, kind),  # type: ignore[arg-type]
        media_type=media,
        headers=headers,
    )


def _owned_job_id(job_id: str, session: SessionDep, principal: PrincipalDep) -> str:
    # A dependency, so another team's (or no) job is a 404 before the body is validated:
    # a stranger learns nothing from the shape of their request either.
    return get_job_or_404(session, principal, job_id).id


@router.post(
    "/{job_id}/predict",
    response_model=PredictResponse,
    responses={413: {"model": Problem, "description": "More instances than allowed."}},
)
def predict(
    job_id: Annotated[str, Depends(_owned_job_id)],
    body: PredictRequest,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> PredictResponse:
    """Predictions of the job's exported model (ONNX Runtime) on raw instances."""
    limit = settings.predict_max_instances
    if len(body.instances) > limit:
        raise ProblemError(
            413, "Too many instances",
            f"{len(body.instances)} instances; at most {limit} per request "
            "(TRAINFORGE_PREDICT_MAX_INSTANCES): send them in batches.",
        )  # fmt: skip
    job = get_job_or_404(session, principal, job_id)
    row = service.ready_export_or_409(session, job)
    model = _sessions(request, settings.predict_cache_size).get(session, row)
    session.close()
    try:
        return service.predict(model, body.instances)
    except InstanceErrors as exc:
        raise ProblemError(
            422, "Invalid instances", f"{len(exc.problems)} instance problem(s); see `errors`.",
            errors=exc.problems,
        ) from exc  # fmt: skip

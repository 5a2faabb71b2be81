"""/v1/jobs/{job_id}/checkpoints: list a job's checkpoints, download their weights."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from api.checkpoints import repository as repo
from api.checkpoints.schemas import CheckpointPage, CheckpointRead
from api.deps import SessionDep
from api.ledger.access import get_job_or_404
from api.problems import Problem, ProblemError
from api.teams.auth import PrincipalDep

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or invalid API key."},
    404: {"model": Problem, "description": "No such job or checkpoint (or another team's)."},
    422: {"model": Problem, "description": "Invalid input; `errors` lists every problem."},
}

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=_ERRORS)


def _read(ckpt: repo.Checkpoint) -> CheckpointRead:
    return CheckpointRead.model_validate(repo.payload(ckpt))


@router.get("/{job_id}/checkpoints", response_model=CheckpointPage)
def list_checkpoints(
    job_id: str,
    session: SessionDep,
    principal: PrincipalDep,
    cursor: Annotated[str | None, Query(max_length=18, pattern=r"^[0-9]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CheckpointPage:
    """The job's kept checkpoints, oldest first; retention has removed the others."""
    job = get_job_or_404(session, principal, job_id)
    after = int(cursor) if cursor else None
    rows = repo.list_checkpoints(session, job.id, after=after, limit=limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    return CheckpointPage(
        items=[_read(c) for c in rows],
        next_cursor=str(rows[-1].id) if more and rows else None,
    )


def _stream(factory: sessionmaker[Session], checkpoint_id: int) -> Iterator[bytes]:
    # One short session per chunk: between two chunks the generator waits on the
    # client, and a client that never reads must not hold a pooled connection
    # (issue 18). One chunk row per query, so a large file never sits in memory whole.
    try:
        yield from repo.stream_file(factory, checkpoint_id, "weights")
    except LookupError:
        # Headers (and Content-Length) are sent: all we can do is cut the
        # body short, which every client reports as an incomplete download.
        log.warning("checkpoint %s was deleted during its download", checkpoint_id)
        raise


def _resolve_checkpoint(session: Session, job_id: str, ref: str) -> repo.Checkpoint | None:
    """An id, or the aliases ``latest`` (the newest kept) and ``best`` (``is_best``)."""
    if ref == "latest":
        return repo.latest_checkpoint(session, job_id)
    if ref == "best":
        return next((c for c in repo.list_checkpoints(session, job_id) if c.is_best), None)
    return repo.get_checkpoint(session, job_id, int(ref))


@router.get(
    "/{job_id}/checkpoints/{checkpoint_id}/download",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "description": "The weights as a safetensors file (the model's state_dict).",
        }
    },
)
def download_checkpoint(
    job_id: str,
    checkpoint_id: Annotated[
        str,
        Path(
            pattern=r"^([0-9]{1,18}|best|latest)$",
            description="A checkpoint id, or `best` (the kept best by the monitor) or `latest`.",
        ),
    ],
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
) -> StreamingResponse:
    """The checkpoint's weights (safetensors), streamed chunk by chunk."""
    job = get_job_or_404(session, principal, job_id)
    ckpt = _resolve_checkpoint(session, job.id, checkpoint_id)
    if ckpt is None:
        raise ProblemError(404, "Not found", f"No checkpoint {checkpoint_id} of job {job_id!r}.")
    filename = f"{job.id}-step{ckpt.step}.safetensors"
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Content-Length": str(ckpt.size_bytes),
        "ETag": f'"{ckpt.sha256}"',
        "X-Checksum-Sha256": ckpt.sha256,
    }
    session.close()  # release the connection before a possibly long download
    return StreamingResponse(
        _stream(request.app.state.session_factory, ckpt.id),
        media_type="application/octet-stream",
        headers=headers,
    )

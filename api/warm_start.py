"""The source of a spec's ``warm_start``: a finished job of the same team and its checkpoint.

Used by the API's spec validation (``api.spec_service``) and by the worker, which loads
the checkpoint's weights when the job starts. Another team's job (or no job) is a 404 at
``spec.warm_start.job_id``, never a 403 and never a hint that it exists.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db import checkpoints as ckpt_repo
from api.db import jobs as jobs_repo
from api.problems import FieldProblem, ProblemError
from ml.spec import WarmStartSpec

ENDED = ("succeeded", "failed", "canceled")


def source_checkpoint(
    session: Session, warm: WarmStartSpec, team_id: str
) -> ckpt_repo.Checkpoint | str:
    """The source checkpoint, or why there is none (the job itself missing: ``"no job"``)."""
    source = jobs_repo.get_job(session, warm.job_id, team_id)
    if source is None:
        return "no job"
    if source.status not in ENDED:
        return f"job {warm.job_id!r} is {source.status}: warm start from a job that has ended"
    query = select(ckpt_repo.Checkpoint).where(ckpt_repo.Checkpoint.job_id == source.id)
    if warm.checkpoint == "best":
        ckpt = session.scalar(query.where(ckpt_repo.Checkpoint.is_best).limit(1))
        missing = "has no best checkpoint (checkpointing.keep_best 0?): use 'latest' or an id"
    elif warm.checkpoint == "latest":
        ckpt = ckpt_repo.latest_checkpoint(session, source.id)
        missing = "has no checkpoint"
    else:
        ckpt = ckpt_repo.get_checkpoint(session, source.id, warm.checkpoint)
        missing = f"has no checkpoint {warm.checkpoint} (GET /v1/jobs/{{id}}/checkpoints)"
    return ckpt if ckpt is not None else f"job {warm.job_id!r} {missing}"


def check_source(
    warm: WarmStartSpec | None, session: Session, team_id: str, prefix: str = "spec"
) -> list[FieldProblem]:
    """[] when the source exists and has the checkpoint; raises the 404 for no such job."""
    if warm is None:
        return []
    found = source_checkpoint(session, warm, team_id)
    if found == "no job":
        loc = f"{prefix}.warm_start.job_id"
        raise ProblemError(
            404,
            "Not found",
            f"No job {warm.job_id!r} to warm-start from.",
            errors=[FieldProblem(loc=loc, msg=f"no job {warm.job_id!r}", type="not_found")],
        )
    if isinstance(found, str):
        field = "job_id" if " is " in found else "checkpoint"
        return [
            FieldProblem(loc=f"{prefix}.warm_start.{field}", msg=found, type="warm_start_source")
        ]
    return []

"""The source of a spec's ``warm_start``: a finished job of the same team and its checkpoint.

Used by the API's spec validation (``api.spec_service``) and by the worker, which loads
the checkpoint's weights when the job starts. Another team's job (or no job) is a 404 at
``spec.warm_start.job_id``, never a 403 and never a hint that it exists.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.db.warm_start_source import source_checkpoint
from api.problems import FieldProblem, ProblemError
from ml.spec import WarmStartSpec


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

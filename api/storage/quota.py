"""The storage quota where the API accepts work that will store bytes: 507 when full.

(Importable from api.jobs_service: nothing here imports the jobs service back.)
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.problems import ProblemError
from api.storage import repository as repo
from ml.checks import SpecProblem
from ml.resources import ResourceEstimate, checkpoint_size, checkpoints_saved
from ml.spec import JobSpec


def refuse_when_full(session: Session, team_id: str, default: int = 0) -> None:
    """507 for a new job of a team already at or over its storage quota (its own, else
    ``default``): its first checkpoint could only fail it. One primary-key read when the
    team has no quota."""
    quota = repo.storage_quota(session, team_id, default)
    if quota is None:
        return
    used = repo.usage(session, team_id).total_bytes
    if used >= quota:
        raise ProblemError(
            507,
            "Insufficient Storage",
            f"The team stores {used:,} bytes, at or over its storage quota of {quota:,} bytes "
            "(checkpoints and datasets): delete ended jobs (DELETE /v1/jobs/{id}) or "
            "datasets, or ask an admin to raise max_storage_bytes.",
        )


def checkpoint_room(
    session: Session, team_id: str, spec: JobSpec, est: ResourceEstimate, default: int = 0
) -> SpecProblem | None:
    """A problem at ``checkpointing.keep_last`` when the checkpoints the job keeps, each of
    the size its plan implies, are more than the team has left of its storage quota.

    Kept: ``keep_last + keep_best``, at most the checkpoints the run saves. The size is a
    lower bound (``ml.resources.checkpoint_size``), so what is refused cannot fit."""
    quota = repo.storage_quota(session, team_id, default)
    if quota is None:
        return None
    policy = spec.checkpointing
    size = checkpoint_size(spec, est)
    saved = checkpoints_saved(spec)
    kept = min(policy.keep_last + policy.keep_best, saved)
    stored = repo.usage(session, team_id).total_bytes
    left = max(quota - stored, 0)
    if kept * size.total <= left:
        return None
    parts = f"weights {size.weights:,} + optimizer state {size.optimizer:,}"
    if size.best:
        parts += f" + best weights {size.best:,}"
    fit = left // size.total if size.total else kept
    hint = (
        f"at most {fit} fit: set keep_last + keep_best to {fit} or less, use a smaller "
        "model, or free storage"
        if fit >= 1
        else "not even one fits: use a smaller model or free storage"
    )
    return SpecProblem(
        ("checkpointing", "keep_last"),
        f"keep_last {policy.keep_last} + keep_best {policy.keep_best} checkpoints, of the "
        f"{saved} this run saves (epochs {spec.epochs}, every_n_epochs "
        f"{policy.every_n_epochs}): {kept} x {size.total:,} bytes ({parts}) = "
        f"{kept * size.total:,} bytes, more than the {left:,} bytes the team has left of "
        f"its storage quota of {quota:,} ({stored:,} stored); {hint} (delete ended jobs: "
        "DELETE /v1/jobs/{id})",
        "checkpoints_over_storage_quota",
    )

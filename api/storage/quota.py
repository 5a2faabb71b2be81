"""The storage quota where the API accepts work that will store bytes: 507 when full,
a 422 at checkpointing.keep_last when a job's checkpoints cannot fit.

(Importable from api.jobs.service: nothing here imports the jobs service back.)
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.problems import ProblemError
from api.storage import repository as repo
from api.storage.schemas import StorageFigures
from ml.checks import SpecProblem
from ml.resources import CheckpointSize, ResourceEstimate, checkpoint_size, checkpoints_saved
from ml.spec import JobSpec

_MEMO = "trainforge.storage_room"


def _room(session: Session, team_id: str, default: int) -> tuple[int, repo.StorageUsage] | None:
    """The team's quota and what it stores (None: no quota), read once per transaction: a
    submit asks twice (is the team full? do the job's checkpoints fit?) before writing."""
    transaction = session.get_transaction()
    held = session.info.get(_MEMO)
    if held is None or held[0] is not transaction:  # a new transaction reads afresh
        held = session.info[_MEMO] = (transaction, {})
    memo: dict[tuple[str, int], tuple[int, repo.StorageUsage] | None] = held[1]
    if (team_id, default) not in memo:
        quota = repo.storage_quota(session, team_id, default)
        room = None if quota is None else (quota, repo.usage(session, team_id))
        memo[(team_id, default)] = room
    return memo[(team_id, default)]


def insufficient_storage(exc: repo.StorageQuotaExceeded) -> ProblemError:
    """507 Insufficient Storage with the team's figures in ``storage`` (a StorageProblem).

    507, not 413: a 413 says this request is too large for anyone (the upload limits,
    TRAINFORGE_MAX_UPLOAD_BYTES); this one says the team's stored bytes leave no room,
    which deleting ended jobs or datasets, or a larger quota, fixes."""
    return _problem(exc.stored, exc.quota, exc.adding, str(exc))


def _problem(stored: repo.StorageUsage, quota: int, adding: int, detail: str) -> ProblemError:
    figures = StorageFigures(
        stored_bytes=stored.total_bytes,
        checkpoint_bytes=stored.checkpoint_bytes,
        dataset_bytes=stored.dataset_bytes,
        quota_bytes=quota,
        request_bytes=adding,
        available_bytes=max(quota - stored.total_bytes, 0),
    )
    extensions = {"storage": figures.model_dump()}
    return ProblemError(507, "Insufficient Storage", detail, extensions=extensions)


def refuse_when_full(session: Session, team_id: str, default: int = 0) -> None:
    """507 for a new job of a team already at or over its storage quota (its own, else
    ``default``): its first checkpoint could only fail it. One primary-key read when the
    team has no quota."""
    room = _room(session, team_id, default)
    if room is None:
        return
    quota, stored = room
    used = stored.total_bytes
    if used >= quota:
        raise _problem(
            stored,
            quota,
            0,
            f"The team stores {used:,} bytes, at or over its storage quota of {quota:,} bytes "
            "(checkpoints and datasets): delete ended jobs (DELETE /v1/jobs/{id}) or "
            "datasets, or ask an admin to raise max_storage_bytes.",
        )


def team_room(
    session: Session, team_id: str, default: int = 0
) -> tuple[int, repo.StorageUsage] | None:
    """The team's storage quota and what it stores (None: no quota), read once per
    transaction."""
    return _room(session, team_id, default)


def kept_checkpoints(spec: JobSpec, est: ResourceEstimate) -> tuple[int, CheckpointSize]:
    """How many checkpoints the job keeps (``keep_last + keep_best``, at most the ones the
    run saves) and the size of each, at least."""
    policy = spec.checkpointing
    return min(policy.keep_last + policy.keep_best, checkpoints_saved(spec)), checkpoint_size(
        spec, est
    )


def size_parts(size: CheckpointSize) -> str:
    parts = f"weights {size.weights:,} + optimizer state {size.optimizer:,}"
    return parts + (f" + best weights {size.best:,}" if size.best else "")


def checkpoint_room(
    session: Session, team_id: str, spec: JobSpec, est: ResourceEstimate, default: int = 0
) -> SpecProblem | None:
    """A problem at ``checkpointing.keep_last`` when the checkpoints the job keeps, each of
    the size its plan implies, are more than the team has left of its storage quota.

    Kept: ``keep_last + keep_best``, at most the checkpoints the run saves. The size is a
    lower bound (``ml.resources.checkpoint_size``), so what is refused cannot fit."""
    room = _room(session, team_id, default)
    if room is None:
        return None
    quota, usage = room
    policy = spec.checkpointing
    kept, size = kept_checkpoints(spec, est)
    saved = checkpoints_saved(spec)
    stored = usage.total_bytes
    left = max(quota - stored, 0)
    if kept * size.total <= left:
        return None
    parts = size_parts(size)
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

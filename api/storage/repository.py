"""Repository functions of the storage domain (SQLAlchemy only; the worker imports these).

A team's stored bytes are its checkpoints (every chunk: the weights file and the
resume state) and its datasets (the normalised content), summed in the blob store
(api.db.blobs). Metric
points, events and logs are small next to them and are not counted.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.db import blobs
from api.db.blobs import StorageUsage as StorageUsage
from api.ledger.models import Job
from api.ledger.repository import TERMINAL
from api.teams.models import Team


class StorageQuotaExceeded(Exception):
    """Storing this would take the team past its ``max_storage_bytes``."""

    def __init__(
        self,
        team_id: str,
        used: int,
        quota: int,
        what: str,
        *,
        stored: StorageUsage | None = None,
        adding: int = 0,
    ) -> None:
        self.team_id, self.used, self.quota = team_id, used, quota
        self.stored = stored or StorageUsage(0, 0)  # before this request
        self.adding = adding
        super().__init__(
            f"{what} would take the team's stored bytes to {used:,}, over its storage quota "
            f"of {quota:,} bytes (checkpoints and datasets). Delete ended jobs "
            "(DELETE /v1/jobs/{id}) or datasets, lower checkpointing.keep_last, or ask an "
            "admin to raise max_storage_bytes."
        )


def usage(session: Session, team_id: str) -> StorageUsage:
    """Counted through the blob store (one indexed sum): checkpoints and datasets; model
    exports are not counted, as before the one store."""
    return blobs.usage(session, team_id)


def storage_quota(session: Session, team_id: str, default: int = 0) -> int | None:
    """The team's own ``max_storage_bytes``, else ``default`` (the operator's
    TRAINFORGE_DEFAULT_STORAGE_QUOTA_BYTES; 0: none)."""
    quota = session.scalar(select(Team.max_storage_bytes).where(Team.id == team_id))
    if quota is None:
        return default or None
    return int(quota)


def check_quota(
    session: Session, team_id: str, *, adding: int, what: str, default: int = 0
) -> None:
    """Raise StorageQuotaExceeded when the team's usage plus ``adding`` bytes is over its
    quota (its own, else ``default``). One primary-key read when there is none."""
    quota = storage_quota(session, team_id, default)
    if quota is None:
        return
    stored = usage(session, team_id)
    used = stored.total_bytes + adding
    if used > quota:
        raise StorageQuotaExceeded(team_id, used, quota, what, stored=stored, adding=adding)


def delete_ended_job(session: Session, job_id: str) -> bool:
    """Delete a succeeded, failed or canceled job with everything it owns (transitions,
    metrics, events, logs, checkpoints and their chunks, its model export: foreign keys
    ON DELETE CASCADE, so one statement in the caller's transaction). False when the
    job is not (or no longer) ended: a conditional DELETE, so a concurrent retry wins
    cleanly."""
    result = session.execute(
        delete(Job).where(Job.id == job_id, Job.status.in_(TERMINAL)),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]

"""The storage quota where the API accepts work that will store bytes: 507 when full.

(Importable from api.jobs_service: nothing here imports the jobs service back.)
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.problems import ProblemError
from api.storage import repository as repo


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

"""Reading and writing job reports."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from api.ledger import repository as jobs_repo
from api.reports.models import JobReport


def get_report(session: Session, job_id: str) -> JobReport | None:
    return session.get(JobReport, job_id)


def save_report(
    session: Session,
    job_id: str,
    attempt: int,
    *,
    checkpoint_id: int,
    step: int,
    epoch: int,
    is_best: bool,
    report: dict[str, Any],
) -> None:
    """Store (or replace) the job's report; fenced by the attempt like every worker write."""
    row = session.get(JobReport, job_id) or JobReport(job_id=job_id)
    row.attempt, row.checkpoint_id = attempt, checkpoint_id
    row.checkpoint_step, row.checkpoint_epoch, row.checkpoint_is_best = step, epoch, is_best
    row.report = report
    session.add(row)
    jobs_repo.fence(session, job_id, attempt)  # StaleAttempt: the caller's transaction rolls back

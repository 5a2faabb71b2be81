"""A job's report, or a 409 that says why it has none."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.ledger.models import Job
from api.problems import ProblemError
from api.reports import repository as repo
from api.reports.schemas import ClassScores, JobReport, ReportCheckpoint


def report_or_409(session: Session, job: Job) -> JobReport:
    row = repo.get_report(session, job.id)
    if row is None:
        spec = job.spec
        split = (spec.get("dataset") or {}).get("validation_split", 0.2)
        if job.status in ("queued", "running"):
            why = f"the job is {job.status}: a classification job's report is made when it succeeds"
        elif job.status != "succeeded":
            why = f"the job is {job.status} and only a succeeded job gets a report"
        elif split == 0:
            why = "the job has no validation split (dataset.validation_split 0)"
        else:
            why = "only a classification job with a validation split gets one"
        raise ProblemError(409, "No report", f"Job {job.id!r} has no report: {why}.")
    body = row.report
    return JobReport(
        job_id=job.id,
        checkpoint=ReportCheckpoint(
            id=row.checkpoint_id,
            step=row.checkpoint_step,
            epoch=row.checkpoint_epoch,
            is_best=row.checkpoint_is_best,
        ),
        classes=body["classes"],
        confusion_matrix=body["confusion_matrix"],
        per_class=[ClassScores.model_validate(c) for c in body["per_class"]],
        accuracy=body["accuracy"],
        n_samples=body["n_samples"],
        created_at=row.created_at,
    )

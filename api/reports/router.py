"""GET /v1/jobs/{job_id}/report: the confusion matrix and per-class scores of a job."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SessionDep
from api.ledger.access import get_job_or_404
from api.problems import Problem
from api.reports import service
from api.reports.schemas import JobReport
from api.teams.auth import PrincipalDep

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or invalid API key."},
    404: {"model": Problem, "description": "No such job (or another team's)."},
    409: {"model": Problem, "description": "The job has no report; `detail` says why."},
}

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=_ERRORS)


@router.get("/{job_id}/report", response_model=JobReport, response_model_by_alias=True)
def get_job_report(job_id: str, session: SessionDep, principal: PrincipalDep) -> JobReport:
    """A succeeded classification job's report on its validation split, from its best
    checkpoint (by `checkpointing.monitor`; the latest when it keeps no best one): the
    confusion matrix (rows: true class, columns: predicted, in `classes` order) and each
    class's precision, recall, F1 and support, as scikit-learn computes them."""
    job = get_job_or_404(session, principal, job_id)
    return service.report_or_409(session, job)

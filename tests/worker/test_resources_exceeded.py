"""The worker checks a job's resources again before it allocates anything (issue 18, 5).

A job that reached the queue although it is above this worker's limits (the
limits were lowered, or an older API stored it) ends ``failed`` with
``status_reason`` ``resources_exceeded`` and a message naming the field; it
never starts training.
"""

from __future__ import annotations

from api.db.session import session_factory
from api.ledger.models import Job, MetricPoint
from api.settings import Settings
from tests.worker.helpers import insert_job
from worker.runner import run_job

SPEC = {
    "dataset": {"source": {"kind": "builtin", "name": "iris"}},
    "model": {"kind": "mlp", "hidden_units": [64]},
    "epochs": 2,
}


def _job(settings: Settings) -> str:
    with session_factory(settings.resolved_database_url)() as s:
        job_id = insert_job(s, SPEC)
        s.commit()
    return job_id


def test_a_job_above_the_workers_parameter_limit_fails_resources_exceeded(
    settings: Settings,
) -> None:
    job_id = _job(settings)
    run_job(job_id, settings.model_copy(update={"max_parameters": 100}))
    with session_factory(settings.resolved_database_url)() as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert (job.status, job.status_reason) == ("failed", "resources_exceeded")
        assert job.error and "model" in job.error and "TRAINFORGE_MAX_PARAMETERS" in job.error
        assert s.query(MetricPoint).filter_by(job_id=job_id).count() == 0  # never trained


def test_a_job_above_the_workers_memory_limit_fails_resources_exceeded(
    settings: Settings,
) -> None:
    job_id = _job(settings)
    run_job(job_id, settings.model_copy(update={"max_job_memory_bytes": 1000}))
    with session_factory(settings.resolved_database_url)() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status_reason == "resources_exceeded"
        assert job.error and "TRAINFORGE_MAX_JOB_MEMORY_BYTES" in job.error


def test_a_job_within_the_limits_runs(settings: Settings) -> None:
    job_id = _job(settings)
    run_job(job_id, settings)
    with session_factory(settings.resolved_database_url)() as s:
        job = s.get(Job, job_id)
        assert job is not None and (job.status, job.status_reason) == ("succeeded", "completed")

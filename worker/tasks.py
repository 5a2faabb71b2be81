"""Celery tasks take ids only; the SQL row says what to do."""

from __future__ import annotations

from api.queue import RUN_JOB_TASK
from worker.celery_app import app
from worker.runner import run_job


@app.task(name=RUN_JOB_TASK)  # type: ignore[untyped-decorator]
def run_job_task(job_id: str) -> None:
    run_job(job_id)

"""Celery tasks take ids only; the SQL row says what to do."""

from __future__ import annotations

from celery.app import trace
from celery.exceptions import Reject
from sqlalchemy.exc import DBAPIError

import api.webhooks.repository  # noqa: F401  (wires the webhook outbox to status changes)
from api.queue import RUN_JOB_TASK
from worker.celery_app import app
from worker.database_gate import current_problem, report_database_error
from worker.runner import run_job
from worker.shutdown import STOPPING

# Celery calls every task that returns "succeeded"; a job that failed is not a success.
# The task returns the job's real outcome, and the line says "done" with it:
#   Task trainforge.run_job[…] done in 3.39s: 'job 3f2a… attempt 1 failed (error): …'
trace.LOG_SUCCESS = "Task %(name)s[%(id)s] done in %(runtime)ss: %(return_value)s"


@app.task(name=RUN_JOB_TASK)  # type: ignore[untyped-decorator]
def run_job_task(job_id: str) -> str:
    if STOPPING.is_set():  # a doorbell taken while stopping goes back for the next worker
        raise Reject("this worker is stopping", requeue=True)
    problem = current_problem()
    if problem is not None:  # taken just before the gate stopped consuming: give it back
        raise Reject(f"not consuming: {problem}", requeue=True)
    try:
        return run_job(job_id)
    except DBAPIError as exc:  # unreachable, or a schema this code does not know
        report_database_error()  # the gate checks at once, and stops consuming if so
        raise Reject(f"database error: {type(exc).__name__}", requeue=True) from exc

"""The doorbell: a Celery message carrying only a job id, sent by task name.

The API never imports the worker; it publishes ``trainforge.run_job`` by name
after the job row is committed. Redis may lose the message -- the SQL row is
the ledger and the reconciler re-publishes.
"""

from __future__ import annotations

from typing import Protocol

from celery import Celery

from api.settings import Settings

RUN_JOB_TASK = "trainforge.run_job"


class JobQueue(Protocol):
    def publish(self, job_id: str, queue: str) -> None: ...

    def ping(self) -> None:
        """Raise when the broker cannot be reached."""
        ...


class CeleryJobQueue:
    def __init__(self, settings: Settings) -> None:
        self._app = Celery("trainforge-api", broker=settings.resolved_broker_url)
        self._app.conf.broker_transport = settings.broker_transport
        self._app.conf.broker_transport_options = settings.broker_transport_options()
        self._app.conf.broker_connection_retry_on_startup = True

    def publish(self, job_id: str, queue: str) -> None:
        self._app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue, ignore_result=True)

    def ping(self) -> None:
        with self._app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)


def celery_queue(settings: Settings) -> CeleryJobQueue:
    return CeleryJobQueue(settings)

"""The Celery app: settings for long training jobs, one job at a time per GPU."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_init

from api.settings import Settings, get_settings


def make_celery(settings: Settings) -> Celery:
    app = Celery("trainforge", broker=settings.resolved_broker_url, include=["worker.tasks"])
    app.conf.update(
        broker_transport=settings.broker_transport,  # the embedded broker's (api/broker.py)
        broker_transport_options=settings.broker_transport_options(),
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue,
        # Ack only once the job has run: a worker that dies mid-job leaves the
        # message for redelivery (and the lease/reconciler covers lost messages).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        worker_concurrency=1,
        worker_hijack_root_logger=False,
    )
    return app


app = make_celery(get_settings())


@worker_init.connect  # type: ignore[untyped-decorator]
def _one_job_per_worker(sender: Any = None, **_: Any) -> None:
    # One worker process per GPU: two jobs in one process would share the device.
    concurrency = getattr(sender, "concurrency", 1)
    if concurrency != 1:
        raise RuntimeError(
            f"trainforge workers run one job at a time; got concurrency "
            f"{concurrency}. Start one worker per GPU instead."
        )

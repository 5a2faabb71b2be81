"""Run one job: claim it, train it behind the SQL sinks, record how it ended."""

from __future__ import annotations

import logging
import threading
import time

from ml.engine import NonFiniteLoss, TrainError, train
from sqlalchemy.orm import Session, sessionmaker

from api.db import jobs as repo
from api.db.models import Job
from api.db.session import session_factory
from api.settings import Settings, get_settings
from ml.spec import JobSpec
from worker.sinks import SqlMetricSink, with_db_retry

log = logging.getLogger(__name__)


class LeaseKeeper:
    """The engine's RunControl: a heartbeat thread renews the lease and reads the cancel flag.

    ``should_stop`` only reads flags, so the training loop can call it every step.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        job_id: str,
        attempt: int,
        settings: Settings,
        max_runtime_seconds: int | None,
    ) -> None:
        self._factory, self._job_id, self._attempt = factory, job_id, attempt
        self._settings = settings
        self._deadline = (
            time.monotonic() + max_runtime_seconds if max_runtime_seconds is not None else None
        )
        self._progress: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{job_id}", daemon=True)
        self.cancel_requested = False
        self.fenced = False
        self.runtime_exceeded = False

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def on_progress(self, epoch: int, step: int) -> None:
        self._progress = (epoch, step)

    def should_stop(self) -> bool:
        if self._deadline is not None and time.monotonic() > self._deadline:
            self.runtime_exceeded = True
        return self.cancel_requested or self.fenced or self.runtime_exceeded

    def _beat(self) -> None:
        while not self._stop.wait(self._settings.heartbeat_seconds):
            epoch, step = self._progress or (None, None)
            try:
                with self._factory() as session:
                    beat = repo.heartbeat(
                        session,
                        self._job_id,
                        self._attempt,
                        self._settings.lease_seconds,
                        epoch=epoch,
                        step=step,
                    )
                    session.commit()
                self.cancel_requested = beat.cancel_requested
            except repo.StaleAttempt:
                log.warning("job %s attempt %s was fenced off", self._job_id, self._attempt)
                self.fenced = True
                return
            except Exception:
                log.exception("heartbeat failed for job %s", self._job_id)


def run_job(job_id: str, settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    factory = session_factory(settings.resolved_database_url)
    attempt = with_db_retry(factory, lambda s: repo.claim_job(s, job_id, settings.lease_seconds))
    if attempt is None:
        log.info("job %s is not queued (duplicate delivery or canceled): nothing to do", job_id)
        return
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        spec = JobSpec.model_validate(job.spec)
    keeper = LeaseKeeper(factory, job_id, attempt, settings, spec.limits.max_runtime_seconds)
    metrics = SqlMetricSink(
        factory,
        job_id,
        attempt,
        flush_points=settings.metrics_flush_points,
        flush_seconds=settings.metrics_flush_seconds,
    )
    keeper.start()
    status, reason, error, stopped_epoch = "failed", "error", None, None
    progress: tuple[int, int] | None = None
    try:
        result = train(spec, metrics=metrics, control=keeper, on_progress=keeper.on_progress)
        stopped_epoch, progress = result.stopped_epoch, (result.epochs_completed, result.step)
        if result.status_reason != "canceled":
            status, reason = "succeeded", result.status_reason
        elif keeper.runtime_exceeded:
            error = (
                f"The job ran past limits.max_runtime_seconds="
                f"{spec.limits.max_runtime_seconds}; raise the limit or shorten the run."
            )
            status, reason = "failed", "max_runtime_exceeded"
        else:
            status, reason = "canceled", "canceled_by_user"
    except repo.StaleAttempt:
        keeper.fenced = True
    except NonFiniteLoss as exc:
        status, reason, error = "failed", "non_finite_loss", str(exc)
    except TrainError as exc:
        status, reason, error = "failed", "error", str(exc)
    except Exception as exc:
        log.exception("job %s crashed", job_id)
        status, reason, error = "failed", "error", f"Internal error: {type(exc).__name__}: {exc}"
    finally:
        keeper.close()
    if keeper.fenced:
        log.warning(
            "job %s attempt %s lost its lease; leaving the job to its new owner", job_id, attempt
        )
        return
    try:
        with_db_retry(
            factory,
            lambda s: repo.finish_job(
                s,
                job_id,
                attempt,
                status=status,
                reason=reason,
                error=error,
                stopped_epoch=stopped_epoch,
                progress=progress,
            ),
        )
    except repo.StaleAttempt:
        log.warning("job %s attempt %s was fenced before it could finish", job_id, attempt)

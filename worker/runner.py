"""Run one job: claim it, train it behind the SQL sinks, record how it ended."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from api.db import jobs as repo
from api.db import scheduling
from api.db.devices import Pool
from api.db.models import Job
from api.db.session import session_factory
from api.queue import CeleryJobQueue
from api.settings import Settings, get_settings
from api.storage.repository import StorageQuotaExceeded
from ml.architecture import multiply_adds_per_sample
from ml.checks import builtin_info
from ml.data import LoadedDataset
from ml.engine import InvalidSpec, NonFiniteLoss, TrainError, TrainResult, train
from ml.launch import RankLost
from ml.resources import ResourcesExceeded
from ml.spec import BuiltinSource, JobSpec
from worker import log_sink, sweeps
from worker import threads as torch_threads
from worker.checkpoint_sink import SqlCheckpointSink
from worker.datasets import load_for_job
from worker.devices import this_worker_pool
from worker.export import export_job
from worker.job_resources import check_job_resources
from worker.log_sink import SqlLogSink
from worker.metrics_server import RUNNING
from worker.progress import ProgressWriter
from worker.report import report_job
from worker.shutdown import STOPPING
from worker.sinks import SqlMetricSink, with_db_retry
from worker.warm_start import load_warm_start

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
        self.shutting_down = False  # this worker is stopping: hand the job back

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def on_progress(self, epoch: int, step: int) -> None:
        self._progress = (epoch, step)

    @property
    def last_progress(self) -> tuple[int, int] | None:
        """The engine's latest (epochs, step) report: where a run that failed stopped."""
        return self._progress

    def should_stop(self) -> bool:
        if self._deadline is not None and time.monotonic() > self._deadline:
            self.runtime_exceeded = True
        if STOPPING.is_set():
            self.shutting_down = True
        return self.cancel_requested or self.fenced or self.runtime_exceeded or self.shutting_down

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


def _step_work(spec: JobSpec, dataset: LoadedDataset | None) -> int:
    """Forward multiply-adds of one training step (the thread count's other input)."""
    source = spec.dataset.source
    if dataset is not None:
        info = dataset.info
    else:  # load_for_job loads uploads only; a builtin is read by the engine
        assert isinstance(source, BuiltinSource)
        info = builtin_info(source)
    return multiply_adds_per_sample(spec, info) * spec.dataset.batch_size


def _claim(
    session: Session, job_id: str, lease_seconds: float, pool: Pool
) -> scheduling.Claimed | None:
    # The message is a doorbell for the job's queue: run the best eligible job of
    # that queue (quotas, priority, fairness) whose devices this worker's pool can
    # give now, usually the job itself; its devices are reserved by the claim.
    queue = scheduling.queue_of(session, job_id)
    return scheduling.claim_next(session, queue, lease_seconds, pool) if queue else None


def _wake_next(factory: sessionmaker[Session], settings: Settings, job_id: str) -> None:
    """A slot just freed: ring for the next eligible job (it may have waited on a quota)."""
    if settings.unsafe_no_republish:
        return
    with factory() as session:
        queue = scheduling.queue_of(session, job_id)
        order = scheduling.pick_order(session, queue) if queue else []
    if order and queue:
        CeleryJobQueue(settings).publish(order[0], queue)


def run_job(job_id: str, settings: Settings | None = None, pool: Pool | None = None) -> str:
    """Returns how it ended, in words (what the Celery task logs). ``pool``: the devices
    this worker draws from (default: this process's, worker/devices.py)."""
    settings = settings or get_settings()
    pool = pool or this_worker_pool(settings)
    factory = session_factory(
        settings.resolved_database_url, settings.db_idle_in_transaction_seconds
    )
    claimed = with_db_retry(factory, lambda s: _claim(s, job_id, settings.lease_seconds, pool))
    if claimed is None:
        said = f"nothing to run for job {job_id}'s message (duplicate, canceled, quota or devices)"
        log.info("%s", said)
        return said
    job_id, attempt = claimed.job_id, claimed.attempt
    # Which of the host's GPUs the claim gave this attempt (the scheduler's; None: the first
    # resources.devices ones).
    try:
        return _run_claimed(factory, settings, job_id, attempt, device_ids=claimed.device_ids)
    finally:
        try:
            _wake_next(factory, settings, job_id)
        except Exception:
            log.warning("could not wake the next job", exc_info=True)


@dataclass
class _Outcome:
    """How an attempt ended, as ``finish_job`` records it."""

    status: str = "failed"
    reason: str = "error"
    error: str | None = None
    stopped_epoch: int | None = None
    progress: tuple[int, int] | None = None  # (epochs, step) where it stopped, when known


@dataclass
class _Attempt:
    """One claimed attempt and what it writes through: lease, live progress, log, sinks."""

    factory: sessionmaker[Session]
    settings: Settings
    job: Job
    spec: JobSpec
    attempt: int
    keeper: LeaseKeeper
    live: ProgressWriter
    lines: SqlLogSink
    metrics: SqlMetricSink
    checkpoints: SqlCheckpointSink
    device_ids: list[int] | None = None  # the devices of this worker's pool it reserved

    @classmethod
    def start(
        cls,
        factory: sessionmaker[Session],
        settings: Settings,
        job: Job,
        spec: JobSpec,
        attempt: int,
        device_ids: list[int] | None = None,
    ) -> _Attempt:
        job_id = job.id
        lines = SqlLogSink(job_id, attempt, settings.job_log_max_lines)  # the job's log
        where = f" (devices {device_ids} of pool {job.device_pool})" if device_ids else ""
        lines.worker_line(
            "info", f"attempt {attempt} started on worker {log_sink.WORKER_NAME}{where}"
        )
        run = cls(
            factory=factory,
            settings=settings,
            job=job,
            spec=spec,
            attempt=attempt,
            keeper=LeaseKeeper(factory, job_id, attempt, settings, spec.limits.max_runtime_seconds),
            live=ProgressWriter(factory, job_id, attempt),  # `progress` events for live views
            lines=lines,
            metrics=SqlMetricSink(
                factory,
                job_id,
                attempt,
                flush_points=settings.metrics_flush_points,
                flush_seconds=settings.metrics_flush_seconds,
                buffer_limit=settings.metrics_buffer_limit,
                lines=lines,
            ),
            checkpoints=SqlCheckpointSink(
                factory,
                job_id,
                attempt,
                spec,
                lines=lines,
                default_quota=settings.default_storage_quota_bytes,
            ),
            device_ids=device_ids,
        )
        RUNNING.start(job_id, attempt, spec.dataset.batch_size)  # --metrics-port
        run.keeper.start()
        run.live.start()
        return run

    def close(self) -> None:
        RUNNING.end()
        self.live.close()
        self.keeper.close()
        # Every point is committed before the final status (and its event) is:
        # an SSE client sees the last metrics before `end`.
        try:
            self.metrics.close()
        except repo.StaleAttempt:
            self.keeper.fenced = True
        except Exception:
            log.exception("job %s: could not write its last metric points", self.job.id)


def _fail_unrunnable_spec(
    factory: sessionmaker[Session],
    settings: Settings,
    job_id: str,
    attempt: int,
    exc: ValidationError,
) -> str:
    """A stored spec that today's validation refuses: ``failed``/``invalid_spec``, not a crash."""
    problems = "; ".join(
        f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
    )
    error = f"this job's spec no longer validates: {problems}"
    outcome = _Outcome(reason="invalid_spec", error=error)
    return _record(factory, settings, job_id, attempt, SqlLogSink(job_id, attempt, 10), outcome)


def _run_claimed(
    factory: sessionmaker[Session],
    settings: Settings,
    job_id: str,
    attempt: int,
    *,
    device_ids: list[int] | None = None,
) -> str:
    """Run a claimed attempt. ``device_ids``: which devices of this worker's pool the
    claim reserved for it (issue 27; the data-parallel engine runs one rank on each)."""
    with factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
    try:
        spec = JobSpec.model_validate(job.spec)
    except ValidationError as exc:  # stored before a check was tightened: it cannot run
        return _fail_unrunnable_spec(factory, settings, job_id, attempt, exc)
    run = _Attempt.start(factory, settings, job, spec, attempt, device_ids)
    try:
        outcome = _train(run)
    finally:
        run.close()
    if run.keeper.fenced:
        log.warning(
            "job %s attempt %s lost its lease; leaving the job to its new owner", job_id, attempt
        )
        return f"job {job_id} attempt {attempt} lost its lease; left to its new owner"
    if outcome.progress is None:
        # A failure without its own step (an error, a quota) stops where the engine
        # last reported, not where the last heartbeat happened to write.
        outcome.progress = run.keeper.last_progress
    return _record(factory, settings, job_id, attempt, run.lines, outcome)


def _train(run: _Attempt) -> _Outcome:
    """Check, load, train and export; every way it can end, as an outcome."""
    factory, spec, keeper, lines = run.factory, run.spec, run.keeper, run.lines
    try:
        check_job_resources(factory, spec, run.job.team_id, run.settings)  # before allocating
        dataset = load_for_job(factory, run.job)
        if spec.resources.devices == 1:  # data parallel: each rank process takes one
            chosen = torch_threads.apply(run.settings.torch_threads, _step_work(spec, dataset))
            lines.worker_line("info", f"{chosen.threads} CPU thread(s): {chosen.why}")
        result = train(
            spec,
            metrics=run.metrics,
            checkpoints=run.checkpoints,
            control=keeper,
            on_progress=RUNNING.track(keeper.on_progress),
            on_step_progress=run.live.report,
            dataset=dataset,
            logs=lines,
            pruner=sweeps.pruner_for_job(factory, run.job.id),  # a sweep trial's early stop
            warm_start=load_warm_start(factory, run.job, spec),  # issue 24
            device_ids=run.device_ids,  # issue 27
        )
        outcome = _outcome_of(result, keeper, spec)
        if result.epochs_completed >= 1 and outcome.status in ("succeeded", "canceled"):
            # Before the final status: a finished job's model is there (or its export error).
            export_job(factory, run.job.id, run.attempt, spec, dataset, result.final_metrics)
        if outcome.status == "succeeded":  # the validation report of the best checkpoint
            report_job(factory, run.job.id, run.attempt, spec, dataset)
        return outcome
    except repo.StaleAttempt:
        keeper.fenced = True
        return _Outcome()
    except RankLost as exc:  # a data-parallel rank died: a lost worker, retried as one
        lines.worker_line("error", str(exc))
        return _Outcome("queued", "worker_lost", str(exc))
    except NonFiniteLoss as exc:  # where it stopped, as the error says
        return _Outcome(reason="non_finite_loss", error=str(exc), progress=(exc.epoch, exc.step))
    except ResourcesExceeded as exc:
        return _Outcome(reason="resources_exceeded", error=str(exc))
    except StorageQuotaExceeded as exc:  # a checkpoint would take the team over its quota
        return _Outcome(reason="storage_quota_exceeded", error=str(exc))
    except InvalidSpec as exc:  # a library refused a validated spec: retrying cannot help
        return _Outcome(reason="invalid_spec", error=str(exc))
    except TrainError as exc:
        return _Outcome(error=str(exc))
    except Exception as exc:
        log.exception("job %s crashed", run.job.id)
        lines.worker_line("error", log_sink.crash(exc))
        return _Outcome(error=f"Internal error: {type(exc).__name__}: {exc}")


def _outcome_of(result: TrainResult, keeper: LeaseKeeper, spec: JobSpec) -> _Outcome:
    """A run the engine finished (completed, stopped early, pruned or stopped by us)."""
    progress = (result.epochs_completed, result.step)
    if result.status_reason != "canceled":
        return _Outcome("succeeded", result.status_reason, None, result.stopped_epoch, progress)
    if keeper.shutting_down and not (keeper.cancel_requested or keeper.runtime_exceeded):
        # Checkpointed as it stopped: queued again, resumed by the next worker at once.
        return _Outcome("queued", "worker_shutdown", None, None, progress)
    if keeper.runtime_exceeded:
        error = (
            f"The job ran past limits.max_runtime_seconds="
            f"{spec.limits.max_runtime_seconds}; raise the limit or shorten the run."
        )
        return _Outcome("failed", "max_runtime_exceeded", error, result.stopped_epoch, progress)
    return _Outcome("canceled", "canceled_by_user", None, result.stopped_epoch, progress)


def _record(
    factory: sessionmaker[Session],
    settings: Settings,
    job_id: str,
    attempt: int,
    lines: SqlLogSink,
    outcome: _Outcome,
) -> str:
    """The outcome line and the terminal status in one transaction; a sweep moves on."""
    if outcome.status == "queued" and outcome.reason == "worker_lost":
        return _requeue_lost(factory, settings, job_id, attempt, lines, outcome)
    if outcome.status == "queued":
        return _hand_back(factory, settings, job_id, attempt, lines, outcome)
    ended = log_sink.outcome(job_id, attempt, outcome.status, outcome.reason, outcome.error)
    lines.worker_line(log_sink.outcome_level(outcome.status), ended)  # also the worker's log
    final_lines = lines.drain()

    def finish(s: Session) -> None:
        # The outcome line first (fenced by the attempt), then the status change, in one
        # transaction: a stream shows the line, then the terminal status, then `end`.
        lines.write(s, final_lines)
        repo.finish_job(
            s,
            job_id,
            attempt,
            status=outcome.status,
            reason=outcome.reason,
            error=outcome.error,
            stopped_epoch=outcome.stopped_epoch,
            progress=outcome.progress,
        )

    try:
        # A sweep's trial: its sweep moves on (next trials) in the transaction that ends it.
        new_trials = with_db_retry(
            factory, lambda s: sweeps.finish_trial(s, job_id, lambda: finish(s))
        )
        sweeps.publish(CeleryJobQueue(settings), new_trials)
    except repo.StaleAttempt:
        log.warning("job %s attempt %s was fenced before it could finish", job_id, attempt)
        return f"job {job_id} attempt {attempt} was fenced before it could finish"
    return ended


def _requeue_lost(
    factory: sessionmaker[Session],
    settings: Settings,
    job_id: str,
    attempt: int,
    lines: SqlLogSink,
    outcome: _Outcome,
) -> str:
    """A part of the attempt was lost (a rank process died): queued again under
    ``retry.max_restarts`` and its doorbell rung, or failed once they are spent."""
    final_lines = lines.drain()
    enforce = not settings.unsafe_ignore_max_restarts

    def requeue(s: Session) -> tuple[str, str | None]:
        lines.write(s, final_lines)
        error = outcome.error or "a part of this attempt was lost"
        to = repo.requeue_lost(s, job_id, attempt, error, outcome.progress, enforce)
        return to, scheduling.queue_of(s, job_id)

    try:
        to, queue = with_db_retry(factory, requeue)
    except repo.StaleAttempt:
        return f"job {job_id} attempt {attempt} was fenced before it could be requeued"
    said = f"job {job_id} attempt {attempt} {to} (worker_lost): {outcome.error}"
    log.warning(said)
    if to == "queued" and queue is not None and not settings.unsafe_no_republish:
        try:
            CeleryJobQueue(settings).publish(job_id, queue)
        except Exception:  # the idle doorbell and the reconciler find it in the ledger
            log.warning("could not ring job %s's doorbell", job_id, exc_info=True)
    return said


def _hand_back(
    factory: sessionmaker[Session],
    settings: Settings,
    job_id: str,
    attempt: int,
    lines: SqlLogSink,
    outcome: _Outcome,
) -> str:
    """The worker is stopping: the job goes back to ``queued`` and its doorbell rings."""
    said = f"job {job_id} attempt {attempt} handed back (queued): this worker is stopping"
    lines.worker_line("info", said)
    final_lines = lines.drain()

    def hand_back(s: Session) -> str | None:
        lines.write(s, final_lines)
        repo.hand_back(s, job_id, attempt, outcome.reason, outcome.progress)
        return scheduling.queue_of(s, job_id)

    try:
        queue = with_db_retry(factory, hand_back)
    except repo.StaleAttempt:
        return f"job {job_id} attempt {attempt} was fenced before it could be handed back"
    if queue is not None and not settings.unsafe_no_republish:
        try:
            CeleryJobQueue(settings).publish(job_id, queue)
        except Exception:  # the idle doorbell and the reconciler find it in the ledger
            log.warning("could not ring job %s's doorbell", job_id, exc_info=True)
    return said

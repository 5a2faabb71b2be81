"""One claimed attempt of a job and what it writes through: the lease keeper (heartbeat,
cancel flag, runtime limit), live progress, its log, its metric and checkpoint sinks.

Shared by the solo path and the pack path of worker/runner.py: each member of a pack is
an ``Attempt`` of its own, set up and closed exactly as a job that trains alone.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from api.ledger import repository as repo
from api.ledger.models import Job
from api.settings import Settings
from ml.spec import JobSpec
from worker import log_sink
from worker.checkpoint_sink import SqlCheckpointSink
from worker.log_sink import SqlLogSink
from worker.metric_sink import SqlMetricSink
from worker.metrics_server import RUNNING
from worker.progress import ProgressWriter
from worker.shutdown import STOPPING

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
        *,
        own_thread: bool = True,
    ) -> None:
        """``own_thread=False``: a :class:`SharedHeartbeat` beats for it (a pack's member)."""
        self._factory, self._job_id, self._attempt = factory, job_id, attempt
        self._own_thread = own_thread
        self.closed = False
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
        if self._own_thread:
            self._thread.start()

    def close(self) -> None:
        self.closed = True
        self._stop.set()
        if self._own_thread:
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

    def beat(self, session: Session) -> bool:
        """Renew the lease and read the cancel flag, committed in ``session``; False once
        this attempt was fenced off (no more beats)."""
        epoch, step = self._progress or (None, None)
        try:
            beat = repo.heartbeat(
                session,
                self._job_id,
                self._attempt,
                self._settings.lease_seconds,
                epoch=epoch,
                step=step,
            )
            session.commit()
        except repo.StaleAttempt:
            session.rollback()
            log.warning("job %s attempt %s was fenced off", self._job_id, self._attempt)
            self.fenced = True
            return False
        self.cancel_requested = beat.cancel_requested
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self._settings.heartbeat_seconds):
            try:
                with self._factory() as session:
                    if not self.beat(session):
                        return
            except Exception:
                log.exception("heartbeat failed for job %s", self._job_id)


class SharedHeartbeat:
    """One thread and one connection renewing the leases of a pack's members (a thread
    each before: 64 for a pack of 64). Each member's beat is its own transaction, so no
    two job rows are ever locked together; a member that ended (closed) or was fenced
    off is skipped."""

    def __init__(
        self, factory: sessionmaker[Session], settings: Settings, keepers: list[LeaseKeeper]
    ) -> None:
        self._factory, self._settings, self._keepers = factory, settings, keepers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-pack", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._settings.heartbeat_seconds):
            beating = [k for k in self._keepers if not (k.closed or k.fenced)]
            if not beating:
                return
            failed: Exception | None = None
            with self._factory() as session:
                for keeper in beating:
                    if keeper.closed:  # ended while this tick ran
                        continue
                    try:
                        keeper.beat(session)
                    except Exception as exc:  # noqa: BLE001 -- the database away: next tick
                        failed = exc
                        session.rollback()
            if failed is not None:
                log.warning("heartbeat failed for a pack's members: %s", failed)


@dataclass
class Outcome:
    """How an attempt ended, as ``finish_job`` records it."""

    status: str = "failed"
    reason: str = "error"
    error: str | None = None
    stopped_epoch: int | None = None
    progress: tuple[int, int] | None = None  # (epochs, step) where it stopped, when known


@dataclass
class Attempt:
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
    tracked: bool = True  # the job the worker's own /metrics shows (a pack's first member)
    device_ids: list[int] | None = None  # the devices of this worker's pool it reserved

    @classmethod
    def start(
        cls,
        factory: sessionmaker[Session],
        settings: Settings,
        job: Job,
        spec: JobSpec,
        attempt: int,
        *,
        track: bool = True,
        device_ids: list[int] | None = None,
        in_pack: bool = False,
    ) -> Attempt:
        """``in_pack``: a pack's member, whose lease a :class:`SharedHeartbeat` renews and
        whose live progress a :class:`SharedProgress` writes (one thread each per pack)."""
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
            keeper=LeaseKeeper(
                factory,
                job_id,
                attempt,
                settings,
                spec.limits.max_runtime_seconds,
                own_thread=not in_pack,
            ),
            # `progress` events for live views
            live=ProgressWriter(factory, job_id, attempt, own_thread=not in_pack),
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
        )
        run.tracked = track
        run.device_ids = device_ids
        if track:
            RUNNING.start(job_id, attempt, spec.dataset.batch_size)  # --metrics-port
        run.keeper.start()
        run.live.start()
        return run

    def close(self) -> None:
        if self.tracked:
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

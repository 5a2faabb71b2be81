"""The engine's checkpoint sink, implemented against the SQL store (chunked rows)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.checkpoints import repository as repo
from api.ledger import metrics as metrics_repo
from api.ledger.models import Job
from api.storage import repository as storage
from ml.logsink import Level
from ml.monitor import resolve_mode
from ml.sinks import CheckpointBlob
from ml.spec import JobSpec
from worker.log_sink import SqlLogSink
from worker.metric_sink import with_db_retry

log = logging.getLogger(__name__)


class CorruptCheckpoint(Exception):
    """The stored weights do not match their sha256."""


class SqlCheckpointSink:
    """``save`` stores a checkpoint of this attempt and applies retention; ``load`` resumes.

    Every save is fenced by the attempt: a stale attempt's save raises
    ``api.ledger.repository.StaleAttempt`` and writes nothing.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        job_id: str,
        attempt: int,
        spec: JobSpec,
        *,
        chunk_bytes: int = repo.CHUNK_BYTES,
        lines: SqlLogSink | None = None,
        default_quota: int = 0,  # TRAINFORGE_DEFAULT_STORAGE_QUOTA_BYTES
    ) -> None:
        self._factory, self._job_id, self._attempt = factory, job_id, attempt
        self._default_quota = default_quota
        self._lines = lines  # the job's log: which checkpoints retention deleted
        policy = spec.checkpointing
        self._retention = repo.Retention(
            keep_last=policy.keep_last,
            keep_best=policy.keep_best,
            monitor=policy.monitor,
            # The same "better" as early stopping and reduce-on-plateau.
            mode=resolve_mode(policy.monitor, policy.mode),
        )
        self._chunk_bytes = chunk_bytes
        self.saved: list[int] = []  # ids of the checkpoints this attempt saved
        self.resumed_from: int | None = None  # the checkpoint id ``load`` returned

    def save(
        self, blob: CheckpointBlob, step: int, epoch: int, metrics: Mapping[str, float]
    ) -> None:
        """Store the checkpoint; at the team's storage quota, first prune this job's own
        checkpoints to keep_last=1 / keep_best=1 (in the same transaction as the save, so a
        save that still does not fit deletes nothing) and keep that retention for the rest
        of the attempt; ``StorageQuotaExceeded`` only when even that is over the quota."""
        try:
            self._save(blob, step, epoch, metrics, self._retention)
            return
        except storage.StorageQuotaExceeded as exc:
            tight = self._at_the_limit()
            if tight == self._retention:
                raise
            self._say(
                "warning",
                f"{exc} Pruning this job's checkpoints to keep_last={tight.keep_last}, "
                f"keep_best={tight.keep_best} for the rest of this attempt and saving again.",
            )
            self._retention = tight
        try:
            self._save(blob, step, epoch, metrics, tight)
        except storage.StorageQuotaExceeded:
            self._say(
                "error",
                f"the checkpoint at step {step} does not fit the storage quota even with "
                f"keep_last={tight.keep_last}, keep_best={tight.keep_best}: the job fails "
                "(storage_quota_exceeded); its stored checkpoints are left as they were",
            )
            raise

    def _at_the_limit(self) -> repo.Retention:
        """The retention a job keeps once its next checkpoint would exceed the quota."""
        keep = self._retention
        return replace(keep, keep_last=1, keep_best=min(keep.keep_best, 1))

    def _say(self, level: Level, message: str) -> None:
        if self._lines is not None:
            self._lines.worker_line(level, message)
        else:
            log.warning("job %s: %s", self._job_id, message)

    def _save(
        self,
        blob: CheckpointBlob,
        step: int,
        epoch: int,
        metrics: Mapping[str, float],
        retention: repo.Retention,
    ) -> None:
        def work(s: Session) -> tuple[repo.Checkpoint, set[int]]:
            before = self._ids(s)
            ckpt = repo.save_checkpoint(
                s,
                self._job_id,
                self._attempt,
                step=step,
                epoch=epoch,
                metrics=metrics,
                weights=blob.weights,
                resume=blob.resume,
                retention=retention,
                chunk_bytes=self._chunk_bytes,
            )
            # After retention, in the same transaction: a checkpoint that would leave the
            # team over its storage quota is rolled back (nothing written, nothing pruned).
            team_id = s.scalar(select(Job.team_id).where(Job.id == self._job_id))
            if team_id is not None:
                what = f"The checkpoint at step {step}"
                storage.check_quota(s, team_id, adding=0, what=what, default=self._default_quota)
            return ckpt, before - self._ids(s)

        ckpt, deleted = with_db_retry(self._factory, work)
        self.saved.append(ckpt.id)
        if deleted and self._lines is not None:
            self._lines.worker_line(
                "info",
                f"checkpoint(s) {', '.join(map(str, sorted(deleted)))} deleted by retention "
                f"(keep_last={retention.keep_last}, keep_best={retention.keep_best})",
            )

    def _ids(self, session: Session) -> set[int]:
        model = repo.Checkpoint
        return set(session.scalars(select(model.id).where(model.job_id == self._job_id)))

    def load(self) -> CheckpointBlob | None:
        """The job's latest checkpoint (from any attempt), or None to start fresh.

        Also drops the metric points after the resume point: this attempt
        re-logs every later step, and must not leave the previous attempt's
        points beyond where it stops (one continuous series).
        """

        def work(session: Session) -> tuple[int, int, str, CheckpointBlob] | None:
            ckpt = repo.latest_checkpoint(session, self._job_id)
            resume_step = ckpt.step if ckpt is not None else -1
            dropped = metrics_repo.delete_metrics_after(
                session, self._job_id, self._attempt, resume_step
            )
            if dropped:
                log.info(
                    "job %s: dropped %d metric points after step %d (resuming)",
                    self._job_id,
                    dropped,
                    resume_step,
                )
            if ckpt is None:
                return None
            blob = CheckpointBlob(
                weights=repo.read_file(session, ckpt.id, "weights"),
                resume=repo.read_file(session, ckpt.id, "resume"),
            )
            return ckpt.id, ckpt.step, ckpt.sha256, blob

        found = with_db_retry(self._factory, work)
        if found is None:
            return None
        ckpt_id, step, sha256, blob = found
        if hashlib.sha256(blob.weights).hexdigest() != sha256:
            raise CorruptCheckpoint(f"checkpoint {ckpt_id} of job {self._job_id} is corrupt")
        self.resumed_from = ckpt_id
        log.info("job %s resumes from checkpoint %d (step %d)", self._job_id, ckpt_id, step)
        return blob

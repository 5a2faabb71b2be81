"""The weights a job with ``warm_start`` starts from: its source checkpoint, team-scoped.

The source is checked when the job is submitted (``api.checkpoints.warm_start``) and
pinned while the job waits (``api.checkpoints.warm_start_pins``); should it still have
gone (a ``best`` or ``latest`` of a source retried since), the job fails with a message
saying so.
"""

from __future__ import annotations

from safetensors.torch import load as st_load
from sqlalchemy.orm import Session, sessionmaker

from api.checkpoints import repository as ckpt_repo
from api.checkpoints.warm_start_source import source_checkpoint
from api.ledger.models import Job
from ml.architecture import TrainError
from ml.sinks import CheckpointBlob
from ml.spec import JobSpec
from ml.warm_start import WarmStart
from worker.metric_sink import with_db_retry


def load_warm_start(factory: sessionmaker[Session], job: Job, spec: JobSpec) -> WarmStart | None:
    warm = spec.warm_start
    if warm is None:
        return None

    def read(session: Session) -> CheckpointBlob | str:
        found = source_checkpoint(session, warm, job.team_id)
        if isinstance(found, str):
            return f"job {warm.job_id!r} no longer exists" if found == "no job" else found
        weights = ckpt_repo.read_file(session, found.id, "weights")
        resume = ckpt_repo.read_file(session, found.id, "resume") if warm.optimizer_state else b""
        return CheckpointBlob(weights=weights, resume=resume)

    blob = with_db_retry(factory, read)
    if isinstance(blob, str):
        raise TrainError(f"warm_start: {blob} (it was there when the job was submitted)")
    resume = blob if warm.optimizer_state else None
    return WarmStart(st_load(blob.weights), warm.freeze, warm.reset, resume)

"""Write a classification job's report when it succeeds (``ml.report``, issue 24).

The weights are the best checkpoint's (``is_best``: by ``checkpointing.monitor``, kept
by retention) or, when the job keeps no best one (``keep_best: 0``), the latest's. A
report that cannot be made is logged and skipped: the job's status never depends on it.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.checkpoints import repository as ckpt_repo
from api.datasets import repository as datasets_repo
from api.ledger import repository as jobs_repo
from api.ledger.models import Job
from api.reports import repository as repo
from ml.data import LoadedDataset, load_dataset
from ml.export import builtin_names
from ml.report import classification_report, has_report
from ml.spec import BuiltinSource, JobSpec
from worker.metric_sink import with_db_retry

log = logging.getLogger(__name__)


def _source_checkpoint(session: Session, job_id: str) -> tuple[Any, bytes] | None:
    ckpt = session.scalar(
        select(ckpt_repo.Checkpoint)
        .where(ckpt_repo.Checkpoint.job_id == job_id, ckpt_repo.Checkpoint.is_best)
        .limit(1)
    ) or ckpt_repo.latest_checkpoint(session, job_id)
    if ckpt is None:
        return None
    return (ckpt.id, ckpt.step, ckpt.epoch, ckpt.is_best), ckpt_repo.read_file(
        session, ckpt.id, "weights"
    )


def _class_names(session: Session, job_id: str, spec: JobSpec, ds: LoadedDataset) -> list[str]:
    source = spec.dataset.source
    if isinstance(source, BuiltinSource):
        names, _ = builtin_names(source, ds.info)
        return names or []
    job = session.get(Job, job_id)
    stored = datasets_repo.get_dataset(session, source.dataset_id, job.team_id) if job else None
    return [str(c) for c in (stored.info.get("class_names") or [])] if stored else []


def report_job(
    factory: sessionmaker[Session],
    job_id: str,
    attempt: int,
    spec: JobSpec,
    dataset: LoadedDataset | None,
) -> bool:
    """Compute and store the report; False when the job gets none or it failed."""
    try:
        ds = dataset if dataset is not None else load_dataset(spec)
        if not has_report(spec, ds):
            return False
        found = with_db_retry(factory, lambda s: _source_checkpoint(s, job_id))
        if found is None:
            return False
        (ckpt_id, step, epoch, is_best), weights = found
        classes = with_db_retry(factory, lambda s: _class_names(s, job_id, spec, ds))
        report = classification_report(spec, ds, weights, classes)
        with_db_retry(
            factory,
            lambda s: repo.save_report(
                s, job_id, attempt, checkpoint_id=ckpt_id, step=step, epoch=epoch,
                is_best=is_best, report=report,
            ),
        )  # fmt: skip
    except jobs_repo.StaleAttempt:
        raise
    except Exception:
        log.warning("job %s: the classification report failed", job_id, exc_info=True)
        return False
    return True

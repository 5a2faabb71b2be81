"""The worker's side of sweeps: end a trial and move its sweep on in one transaction,
judge a running trial at each epoch end (ml.pruning), and the reconciler's sweep pass."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.ledger.models import Job
from api.queue import JobQueue
from api.sweeps import repository as sweeps_repo
from api.sweeps import sampling
from api.sweeps.search import EarlyTermination, NoEarlyTermination
from api.sweeps.space import as_distributions
from api.sweeps.trials import NewTrial, advance_locked, finish_trial, mode_of, records
from worker.metric_sink import with_db_retry

log = logging.getLogger(__name__)

__all__ = ["SqlSweepPruner", "finish_trial", "pruner_for_job", "publish", "reconcile_sweeps"]


class SqlSweepPruner:
    """ml.pruning.EpochPruner for one trial: Optuna's pruner over the sweep's rows."""

    def __init__(self, factory: sessionmaker[Session], job_id: str, sweep_id: str) -> None:
        self._factory, self._job_id, self._sweep_id = factory, job_id, sweep_id

    def should_prune(self, epoch: int, values: Mapping[str, float]) -> bool:
        try:
            return with_db_retry(self._factory, lambda s: self._judge(s, epoch, values))
        except Exception:  # never fail a trial because its sweep could not be read
            log.exception("trial %s: could not evaluate early termination", self._job_id)
            return False

    def _judge(self, session: Session, epoch: int, values: Mapping[str, float]) -> bool:
        sweep = sweeps_repo.get_sweep(session, self._sweep_id, None)
        if sweep is None or sweep.status != "running":
            return False
        early = _early(sweep.early_termination)
        trials = sweeps_repo.trials(session, sweep.id)
        history, _ = records(session, sweep, trials)
        me = next(r for t, r in zip(trials, history, strict=True) if t.id == self._job_id)
        value = values.get(sweep.objective["metric"])
        me.intermediate[epoch + 1] = float("nan") if value is None else float(value)
        me.intermediate = {k: v for k, v in me.intermediate.items() if k <= epoch + 1}
        others = [r for r in history if r is not me]
        prune = sampling.should_prune(
            early, as_distributions(sweep.parameters), mode_of(sweep), others, me
        )
        if prune:
            shown = "nan" if value is None or math.isnan(value) else f"{value:.6g}"
            log.info("trial %s pruned after epoch %s (%s)", self._job_id, epoch, shown)
        return prune


def _early(raw: Mapping[str, object]) -> EarlyTermination:
    from pydantic import TypeAdapter

    adapter: TypeAdapter[EarlyTermination] = TypeAdapter(EarlyTermination)
    return adapter.validate_python(raw)


def pruner_for_job(factory: sessionmaker[Session], job_id: str) -> SqlSweepPruner | None:
    """The pruner of a trial whose sweep terminates early; None for any other job."""
    with factory() as session:
        sweep_id = session.scalar(select(Job.sweep_id).where(Job.id == job_id))
        if sweep_id is None:
            return None
        sweep = sweeps_repo.get_sweep(session, sweep_id, None)
        if sweep is None or isinstance(_early(sweep.early_termination), NoEarlyTermination):
            return None
    return SqlSweepPruner(factory, job_id, sweep_id)


def publish(queue: JobQueue, new: list[NewTrial]) -> None:
    """Ring for new trials, after their commit; a lost doorbell is rung by the reconciler."""
    for trial in new:
        try:
            queue.publish(trial.job_id, trial.queue)
        except Exception:
            log.warning(
                "could not publish trial %s; the reconciler will", trial.job_id, exc_info=True
            )


def reconcile_sweeps(factory: sessionmaker[Session], queue: JobQueue) -> list[NewTrial]:
    """Move every running sweep on (trials that ended outside a worker: lost, canceled)."""
    with factory() as session:
        ids = sweeps_repo.running_sweep_ids(session)
    out: list[NewTrial] = []
    for sweep_id in ids:
        new = with_db_retry(factory, lambda s, i=sweep_id: advance_locked(s, i))  # type: ignore[misc]
        publish(queue, new)
        out += new
    return out

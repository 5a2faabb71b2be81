"""How a sweep moves on: report ended trials, create the next ones, end the sweep.

:func:`advance` is the one place a sweep changes. It runs in the transaction
that ends a trial (the worker's ``finish_job``), in the reconciler's periodic
pass, at creation and at cancel -- always with the sweep row locked, so it is
idempotent: a trial's end is reported once (its ``trial_ended`` event is the
record), the trial count is read from the rows each time, and the unique
(sweep_id, trial_number) index refuses a duplicate outright. Nothing here
commits or publishes; the caller commits, then rings the doorbell for the
returned trials.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.db.models import utcnow
from api.ledger import repository as jobs_repo
from api.ledger.models import Job
from api.ledger.repository import TERMINAL
from api.sweeps import repository as repo
from api.sweeps import sampling
from api.sweeps.models import Sweep
from api.sweeps.search import SweepAlgorithm, execution_of
from api.sweeps.space import as_distributions, grid_size, trial_spec
from ml.pack_key import pack_blocker
from ml.spec import SPEC_VERSION, JobSpec

log = logging.getLogger(__name__)

SweepEndedHook = Callable[[Session, Sweep], None]
_ENDED_HOOKS: list[SweepEndedHook] = []


def on_sweep_ended(hook: SweepEndedHook) -> SweepEndedHook:
    """Register ``hook(session, sweep)``, called in the transaction that ends a sweep
    (succeeded, failed or canceled): e.g. a ``sweep.ended`` webhook's outbox row."""
    _ENDED_HOOKS.append(hook)
    return hook


@dataclass(frozen=True)
class NewTrial:
    job_id: str
    queue: str


def mode_of(sweep: Sweep) -> sampling.Mode:
    return cast(sampling.Mode, sweep.objective["mode"])


def phase_of(job: Job) -> sampling.TrialPhase:
    if job.status not in TERMINAL:
        return "running"
    if job.status == "succeeded":
        return "pruned" if job.status_reason == "pruned" else "complete"
    return "failed"


def records(
    session: Session, sweep: Sweep, trials: list[Job]
) -> tuple[list[sampling.TrialRecord], dict[str, float | None]]:
    """Optuna's view of the trials, and each trial's objective (best epoch so far)."""
    series = repo.objective_series(session, [t.id for t in trials], sweep.objective["metric"])
    out, objective = [], {}
    for t in trials:
        values = series.get(t.id, {})
        objective[t.id] = sampling.best_of(values, mode_of(sweep))
        out.append(
            sampling.TrialRecord(
                number=t.trial_number or 0,
                params=dict(t.params or {}),
                phase=phase_of(t),
                value=objective[t.id],
                intermediate=dict(values),
            )
        )
    return out, objective


def end_sweep(
    session: Session, sweep: Sweep, status: str, reason: str, error: str | None = None
) -> None:
    """The sweep's terminal status, its ``sweep_ended`` event, then the registered hooks."""
    now = utcnow()
    sweep.status, sweep.status_reason, sweep.error = status, reason, error
    sweep.finished_at = sweep.updated_at = now
    repo.add_event(
        session,
        sweep.id,
        repo.SWEEP_ENDED,
        {"status": status, "status_reason": reason, "best_job_id": sweep.best_job_id},
    )
    session.flush()
    for hook in _ENDED_HOOKS:
        hook(session, sweep)


def _report_ended(
    session: Session, sweep: Sweep, trials: list[Job], objective: dict[str, float | None]
) -> None:
    reported = repo.ended_trials_reported(session, sweep.id)
    ended = [t for t in trials if t.status in TERMINAL and t.id not in reported]
    for t in sorted(ended, key=lambda j: (j.finished_at or utcnow(), j.trial_number or 0)):
        value = objective[t.id]
        base = {"trial_number": t.trial_number, "job_id": t.id, "params": t.params}
        repo.add_event(
            session,
            sweep.id,
            repo.TRIAL_ENDED,
            base | {"status": t.status, "status_reason": t.status_reason, "objective": value},
        )
        if (
            t.status == "succeeded"
            and value is not None
            and sampling.better(value, sweep.best_value, mode_of(sweep))
        ):
            sweep.best_job_id, sweep.best_value = t.id, value
            repo.add_event(session, sweep.id, repo.NEW_BEST, base | {"objective": value})


def _create_trial(session: Session, sweep: Sweep, number: int, params: dict[str, Any]) -> Job:
    spec = trial_spec(sweep.spec, params)
    queue = sweep.queues["cuda"] if spec.resources.device == "cuda" else sweep.queues["cpu"]
    job = jobs_repo.create_job(
        session,
        team_id=sweep.team_id,
        key_id=sweep.created_by_key,
        name=f"{sweep.name or 'sweep'} #{number}",
        spec=spec.model_dump(mode="json"),
        spec_version=SPEC_VERSION,
        queue=queue,
        epochs=spec.epochs,
        max_restarts=spec.retry.max_restarts,
        priority=sweep.priority,
        sweep_id=sweep.id,  # the unique (sweep_id, trial_number) index speaks now
        trial_number=number,
        params=params,
        published=True,  # the caller publishes the trials after its commit
    )
    repo.add_event(
        session,
        sweep.id,
        repo.TRIAL_CREATED,
        {"trial_number": number, "job_id": job.id, "params": params},
    )
    return job


def _never_packs(sweep: Sweep) -> bool:
    try:
        return pack_blocker(JobSpec.model_validate(sweep.spec)) is not None
    except ValidationError:
        return True


def live_limit(sweep: Sweep) -> int:
    """How many trials may be queued or running at once.

    ``max_concurrent_trials`` counts worker slots. With packing on, grid and random search
    keep up to ``max_pack`` trials per slot queued, so a worker finds a whole pack to claim
    (their points do not depend on results). TPE samples from the results so far, so it
    keeps ``max_concurrent_trials``: its packs are at most that big. So does a sweep whose
    base spec can never pack (``ml.pack_key.pack_blocker``: a warm start, devices > 1, ...).
    """
    execution = execution_of(sweep.execution)
    if execution.pack == "off" or sweep.algorithm.get("kind") == "tpe" or _never_packs(sweep):
        return sweep.max_concurrent_trials
    return sweep.max_concurrent_trials * execution.max_pack


def advance(session: Session, sweep: Sweep) -> list[NewTrial]:
    """Bring a locked sweep up to date; the trials to publish once the caller commits."""
    trials = repo.trials(session, sweep.id)
    history, objective = records(session, sweep, trials)
    _report_ended(session, sweep, trials, objective)
    if sweep.status != "running":
        return []
    live = sum(1 for t in trials if t.status not in TERMINAL)
    created = len(trials)
    room = min(live_limit(sweep) - live, sweep.max_trials - created)
    parameters = as_distributions(sweep.parameters)
    algorithm = SweepAlgorithm.model_validate(sweep.algorithm)
    out: list[NewTrial] = []
    for number in range(created, created + max(room, 0)):
        params = sampling.next_params(
            algorithm, parameters, mode_of(sweep), history, number, sweep.max_trials
        )
        try:
            job = _create_trial(session, sweep, number, params)
        except ValidationError as exc:  # a sampled point the checks could not foresee
            log.warning("sweep %s: trial %s is not a valid spec: %s", sweep.id, number, exc)
            end_sweep(
                session,
                sweep,
                "failed",
                "error",
                f"trial {number} with {params} is not a valid spec: {exc.errors()[0]['msg']}",
            )
            return out
        history.append(sampling.TrialRecord(number, params, "running"))
        out.append(NewTrial(job.id, job.queue))
    live += len(out)
    if created + len(out) >= sweep.max_trials and live == 0:
        reason = "grid_exhausted" if sweep.algorithm["kind"] == "grid" else "completed"
        if reason == "grid_exhausted" and sweep.max_trials < _grid_size(sweep):
            reason = "completed"
        end_sweep(session, sweep, "succeeded", reason)
    sweep.updated_at = utcnow()
    return out


def _grid_size(sweep: Sweep) -> int:
    return grid_size(as_distributions(sweep.parameters))


def advance_locked(session: Session, sweep_id: str) -> list[NewTrial]:
    """The reconciler's pass for one sweep: skipped while another transaction holds it."""
    sweep = repo.lock_sweep(session, sweep_id, skip_locked=True)
    if sweep is None or sweep.status != "running":
        return []
    return advance(session, sweep)


def finish_trial(session: Session, job_id: str, finish: Callable[[], None]) -> list[NewTrial]:
    """End a job (``finish`` writes its terminal status) and, for a trial, move its sweep on
    in the same transaction. The sweep row is locked before the job row."""
    sweep = repo.lock_sweep_of_job(session, job_id)
    finish()
    if sweep is None:
        return []
    return advance(session, sweep)

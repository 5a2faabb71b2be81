"""Optuna, rebuilt from rows each time it is asked something.

The sweep's state is its trials (jobs: params, status) and their per-epoch
objective values (metric_points). To sample the next trial or to judge a
running one, an in-memory Optuna study is rebuilt from those rows and asked
once; nothing of Optuna's lives between two questions, so a killed API or
worker loses nothing and two processes never disagree about what exists.

- grid: the ``number``-th combination of the choice/grid values (no sampler).
- random: ``RandomSampler`` seeded with (seed, trial number): the same seed
  gives the same parameters for every trial, whatever order trials end in.
- tpe: ``TPESampler`` on the history so far (running trials included, as
  ``constant_liar`` does), seeded with (seed, trial number).
- asha: ``SuccessiveHalvingPruner``; a trial's value at each rung it reached
  is its objective at that rung's epoch, restored as the pruner's
  ``completed_rung_<k>`` attributes. median: ``MedianPruner``.

Steps are epochs completed (1-based), so a rung at ``grace_epochs`` is judged
after that many epochs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from api.sweeps.search import (
    AshaTermination,
    ChoiceParameter,
    Distribution,
    EarlyTermination,
    GridParameter,
    IntUniformParameter,
    LogUniformParameter,
    MedianTermination,
    SweepAlgorithm,
)
from api.sweeps.space import grid_point

# Optuna is imported where a trial is sampled or judged, not with this module: it costs a
# process ~0.2 s of CPU, and every worker and API process imports this module, most of
# them never sampling a trial.
if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)


TrialPhase = Literal["running", "complete", "pruned", "failed"]
Mode = Literal["min", "max"]


@dataclass
class TrialRecord:
    number: int
    params: dict[str, Any]
    phase: TrialPhase
    value: float | None = None  # the objective (best epoch) of a complete trial
    intermediate: dict[int, float] = field(default_factory=dict)  # epochs completed → value


def distributions(parameters: Mapping[str, Distribution]) -> dict[str, BaseDistribution]:
    """Choices are indices into their values (Optuna's categories must be scalars)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, BaseDistribution] = {}
    for path, d in parameters.items():
        if isinstance(d, ChoiceParameter | GridParameter):
            out[path] = CategoricalDistribution(list(range(len(d.values))))
        elif isinstance(d, IntUniformParameter):
            out[path] = IntDistribution(d.low, d.high, log=d.log)
        else:
            out[path] = FloatDistribution(d.low, d.high, log=isinstance(d, LogUniformParameter))
    return out


def _to_optuna(parameters: Mapping[str, Distribution], params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, d in parameters.items():
        value = params[path]
        out[path] = (
            d.values.index(value) if isinstance(d, ChoiceParameter | GridParameter) else value
        )
    return out


def _from_optuna(
    parameters: Mapping[str, Distribution], params: Mapping[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, d in parameters.items():
        value = params[path]
        out[path] = d.values[value] if isinstance(d, ChoiceParameter | GridParameter) else value
    return out


def rung_steps(asha: AshaTermination, up_to: int) -> list[int]:
    steps, k = [], 0
    while (step := asha.grace_epochs * asha.reduction_factor**k) <= up_to:
        steps.append(step)
        k += 1
    return steps


def _rung_attrs(rec: TrialRecord, asha: AshaTermination | None, up_to: int) -> dict[str, Any]:
    """The ``completed_rung_<k>`` attributes SuccessiveHalvingPruner left on this trial."""
    if asha is None:
        return {}
    attrs: dict[str, Any] = {}
    for k, step in enumerate(rung_steps(asha, up_to)):
        value = rec.intermediate.get(step)
        if value is None or math.isnan(value):
            break
        attrs[f"completed_rung_{k}"] = value
    return attrs


def _frozen(
    rec: TrialRecord,
    parameters: Mapping[str, Distribution],
    asha: AshaTermination | None,
    rungs_up_to: int | None = None,
) -> FrozenTrial:
    from optuna.trial import TrialState, create_trial

    now = datetime.now(UTC)
    state = {
        "running": TrialState.RUNNING,
        "complete": TrialState.COMPLETE,
        "pruned": TrialState.PRUNED,
        "failed": TrialState.FAIL,
    }[rec.phase]
    value = rec.value
    if state == TrialState.COMPLETE and (value is None or math.isnan(value)):
        state, value = TrialState.FAIL, None
    last = max(rec.intermediate, default=0)
    trial = create_trial(
        state=state,
        value=value if state == TrialState.COMPLETE else None,
        params=_to_optuna(parameters, rec.params),
        distributions=distributions(parameters),
        intermediate_values=dict(rec.intermediate),
        system_attrs=_rung_attrs(rec, asha, last if rungs_up_to is None else rungs_up_to),
    )
    trial.datetime_start = now
    trial.datetime_complete = None if state == TrialState.RUNNING else now
    return trial


def _study(
    mode: Mode,
    sampler: BaseSampler,
    pruner: BasePruner | None,
    records: Sequence[TrialRecord],
    parameters: Mapping[str, Distribution],
    asha: AshaTermination | None = None,
) -> optuna.Study:
    import optuna
    from optuna.storages import InMemoryStorage

    _quiet_optuna()
    study = optuna.create_study(
        storage=InMemoryStorage(),
        sampler=sampler,
        pruner=pruner,
        direction="minimize" if mode == "min" else "maximize",
    )
    for rec in sorted(records, key=lambda r: r.number):
        study.add_trial(_frozen(rec, parameters, asha))
    return study


def trial_seed(seed: int, number: int) -> int:
    return (seed * 1_000_003 + number * 7919 + 17) % (2**32)


def next_params(
    algorithm: SweepAlgorithm,
    parameters: Mapping[str, Distribution],
    mode: Mode,
    history: Sequence[TrialRecord],
    number: int,
    max_trials: int,
) -> dict[str, Any]:
    """The parameters of trial ``number`` (0-based)."""
    if algorithm.kind == "grid":
        return grid_point(parameters, number)
    from optuna.samplers import RandomSampler, TPESampler

    seed = trial_seed(algorithm.seed, number)
    sampler: BaseSampler
    if algorithm.kind == "random":
        sampler, history = RandomSampler(seed=seed), []  # independent of the history
    else:
        startup = max(2, min(10, max_trials // 3))
        sampler = TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
    study = _study(mode, sampler, None, history, parameters)
    trial = study.ask(fixed_distributions=distributions(parameters))
    return _from_optuna(parameters, trial.params)


def pruner_for(early: EarlyTermination) -> BasePruner | None:
    from optuna.pruners import MedianPruner, SuccessiveHalvingPruner

    if isinstance(early, AshaTermination):
        return SuccessiveHalvingPruner(
            min_resource=early.grace_epochs,
            reduction_factor=early.reduction_factor,
            min_early_stopping_rate=0,
        )
    if isinstance(early, MedianTermination):
        return MedianPruner(
            n_startup_trials=early.startup_trials, n_warmup_steps=early.warmup_epochs
        )
    return None


def should_prune(
    early: EarlyTermination,
    parameters: Mapping[str, Distribution],
    mode: Mode,
    others: Sequence[TrialRecord],
    current: TrialRecord,
) -> bool:
    """Whether ``current`` (running, judged after its last epoch) stops now."""
    pruner = pruner_for(early)
    if pruner is None or not current.intermediate:
        return False
    from optuna.samplers import RandomSampler

    asha = early if isinstance(early, AshaTermination) else None
    study = _study(mode, RandomSampler(seed=0), pruner, others, parameters, asha)
    last = max(current.intermediate)
    # The rungs before this epoch are done; the one at this epoch is being judged now.
    study.add_trial(_frozen(current, parameters, asha, rungs_up_to=last - 1))
    trial = study.get_trials(deepcopy=False)[-1]
    return bool(pruner.prune(study, trial))


def best_of(values: Mapping[int, float], mode: Mode) -> float | None:
    finite = [v for v in values.values() if not math.isnan(v)]
    if not finite:
        return None
    return min(finite) if mode == "min" else max(finite)


def better(value: float, reference: float | None, mode: Mode) -> bool:
    return reference is None or (value < reference if mode == "min" else value > reference)

"""ml.plan: split sizes, steps, parameter count and LR per epoch of a spec."""

from __future__ import annotations

import math
from typing import Any

import pytest

import ml.checks
from ml.checks import DatasetInfo, builtin_info
from ml.plan import SpecPlan, describe, split_sizes, steps_per_epoch
from ml.schedules import build_schedule
from ml.spec import BuiltinSource, JobSpec


def spec(name: str = "digits", **parts: Any) -> JobSpec:
    dataset = {"source": {"kind": "builtin", "name": name}, **parts.pop("dataset", {})}
    return JobSpec.model_validate({"dataset": dataset, **parts})


def info(name: str = "digits") -> DatasetInfo:
    return builtin_info(BuiltinSource(name=name))


def test_default_digits_plan():
    plan = describe(spec(), info())
    # 1797 samples: ceil(0.2 * 1797) = 360 held out; ceil(1437 / 32) = 45 steps
    # MLP 64 -> 128 -> 64 -> 10, weights and biases
    params = 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert plan == SpecPlan(params, 1437, 360, 45, 450, [0.001] * 10, plan.layers)
    assert [la.op for la in plan.layers] == ["flatten", "dense", "activation", "dense",
                                             "activation", "dense"]  # fmt: skip
    assert sum(la.parameter_count for la in plan.layers) == params


def test_plan_follows_the_spec():
    s = spec(
        "iris",
        dataset={"validation_split": 0.1, "batch_size": 16},
        model={"kind": "mlp", "hidden_units": [8], "normalization": "batch"},
        schedule={"kind": "step_decay", "decay_rate": 0.5, "decay_step": 2},
        optimizer={"kind": "sgd", "lr": 0.2},
        epochs=5,
    )
    plan = describe(s, info("iris"))
    assert (plan.train_samples, plan.validation_samples) == (135, 15)
    assert (plan.steps_per_epoch, plan.total_steps) == (9, 45)  # last partial batch kept
    assert plan.parameter_count == 4 * 8 + 8 + 2 * 8 + 8 * 3 + 3
    assert plan.lr_per_epoch == [0.2, 0.1, 0.1, 0.05, 0.05]
    sched = build_schedule(s, plan.steps_per_epoch)
    assert plan.lr_per_epoch == [sched.lr_at(e, 0) for e in range(5)]


def test_no_validation_and_batch_larger_than_training_set():
    plan = describe(spec("wine", dataset={"validation_split": 0, "batch_size": 1000}), info("wine"))
    assert (plan.train_samples, plan.validation_samples, plan.steps_per_epoch) == (178, 0, 1)
    assert plan.total_steps == 10


def test_reduce_on_plateau_has_no_lr_per_epoch():
    plan = describe(spec(schedule={"kind": "reduce_on_plateau"}), info())
    assert plan.lr_per_epoch is None and plan.total_steps == 450


@pytest.mark.parametrize(("n", "batch"), [(1, 1), (31, 32), (32, 32), (33, 32), (1437, 7)])
def test_steps_per_epoch_keeps_the_last_partial_batch(n, batch):
    assert steps_per_epoch(n, batch) == math.ceil(n / batch)
    assert (steps_per_epoch(n, batch) - 1) * batch < n <= steps_per_epoch(n, batch) * batch


def test_split_sizes_is_the_one_checks_uses():
    assert split_sizes is ml.checks.split_sizes
    assert split_sizes(100, 0.07) == (92, 8)  # float ceil as scikit-learn: 0.07 * 100 > 7
    assert split_sizes(150, 0.2) == (120, 30)

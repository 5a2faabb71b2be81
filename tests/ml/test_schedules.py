"""ml.schedules against its references, step by step.

- multistep, exponential, cosine, cosine_restarts, one_cycle, and the warmup
  factor: the real ``torch.optim.lr_scheduler`` classes, driven the way the
  module docstring says (per epoch, per step, or with fractional epochs).
- step_decay: the seed article's ``lr_decay`` formula, compared exactly.
- reduce_on_plateau: the real ``keras.callbacks.ReduceLROnPlateau`` (Keras 3,
  torch backend) fed the same metric sequences. Metric values are multiples of
  1/64 so that Keras's float32 comparisons and ours (float64) agree exactly.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as tls

from ml.schedules import ReduceOnPlateau, build_schedule, lr_per_epoch
from ml.spec import JobSpec

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere
import keras

# keras's torch backend warns on every numpy conversion (numpy 2 copy keyword)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

LR0 = 0.1


def job(schedule: dict[str, Any], epochs: int = 12, lr: float = LR0) -> JobSpec:
    return JobSpec.model_validate(
        {
            "dataset": {"source": {"kind": "builtin", "name": "digits"}},
            "optimizer": {"kind": "sgd", "lr": lr},
            "schedule": schedule,
            "epochs": epochs,
        }
    )


def ours(spec: JobSpec, spe: int) -> list[float]:
    s = build_schedule(spec, spe)
    return [s.lr_at(e, i) for e in range(spec.epochs) for i in range(spe)]


def torch_lrs(
    make: Callable[[torch.optim.Optimizer], Any], epochs: int, spe: int, per: str, lr: float = LR0
) -> list[float]:
    """LR in the optimizer at each step; ``per`` says when the scheduler is stepped."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make(opt)
    out = []
    for e in range(epochs):
        for i in range(spe):
            opt.step()  # no gradients: a no-op, keeps torch's ordering check quiet
            if per == "fractional":
                sched.step(e + i / spe)
            out.append(opt.param_groups[0]["lr"])
            if per == "step":
                sched.step()
        if per == "epoch":
            sched.step()
    return out


def close(a: list[float], b: list[float]) -> None:
    assert len(a) == len(b)
    assert a == pytest.approx(b, rel=1e-9, abs=1e-15)


SPES = [1, 7]


@pytest.mark.parametrize("spe", SPES)
def test_constant_is_the_optimizer_lr(spe):
    assert ours(job({"kind": "constant"}), spe) == [LR0] * (12 * spe)


@pytest.mark.parametrize("spe", SPES)
@pytest.mark.parametrize(("rate", "step"), [(0.5, 10), (0.5, 1), (0.9, 3)])
def test_step_decay_is_the_seed_formula_exactly(spe, rate, step):
    spec = job({"kind": "step_decay", "decay_rate": rate, "decay_step": step}, epochs=25)

    def lr_decay(epoch: int) -> float:  # the seed article's function, verbatim in substance
        return LR0 * math.pow(rate, math.floor((1 + epoch) / step))

    assert ours(spec, spe) == [lr_decay(e) for e in range(25) for _ in range(spe)]
    assert lr_per_epoch(spec, spe) == [lr_decay(e) for e in range(25)]


@pytest.mark.parametrize("spe", SPES)
@pytest.mark.parametrize("milestones", [[3, 5, 9], [2, 5, 5, 8], [11]])
def test_multistep_matches_torch(spe, milestones):
    spec = job({"kind": "multistep", "milestones": milestones, "gamma": 0.3})
    ref = torch_lrs(lambda o: tls.MultiStepLR(o, milestones, gamma=0.3), 12, spe, "epoch")
    close(ours(spec, spe), ref)


@pytest.mark.parametrize("spe", SPES)
def test_exponential_matches_torch(spe):
    spec = job({"kind": "exponential", "gamma": 0.8})
    close(ours(spec, spe), torch_lrs(lambda o: tls.ExponentialLR(o, 0.8), 12, spe, "epoch"))


@pytest.mark.parametrize("spe", SPES)
@pytest.mark.parametrize(("t_max_epochs", "eta_min"), [(None, 0.0), (None, 0.002), (4, 0.001)])
def test_cosine_matches_torch_stepped_per_step(spe, t_max_epochs, eta_min):
    spec = job({"kind": "cosine", "t_max_epochs": t_max_epochs, "eta_min": eta_min})
    t_max = (t_max_epochs or 12) * spe
    ref = torch_lrs(lambda o: tls.CosineAnnealingLR(o, t_max, eta_min), 12, spe, "step")
    # torch's recursive form drifts by a few ulps over the run
    assert ours(spec, spe) == pytest.approx(ref, rel=1e-7, abs=1e-12)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("spe", [1, 5, 7])
@pytest.mark.parametrize(("t_0", "t_mult", "eta_min"), [(3, 1, 0.0), (2, 2, 0.001), (1, 3, 0.0)])
def test_cosine_restarts_matches_torch_with_fractional_epochs(spe, t_0, t_mult, eta_min):
    spec = job({"kind": "cosine_restarts", "t_0": t_0, "t_mult": t_mult, "eta_min": eta_min}, 15)
    make = lambda o: tls.CosineAnnealingWarmRestarts(o, t_0, t_mult, eta_min)  # noqa: E731
    close(ours(spec, spe), torch_lrs(make, 15, spe, "fractional"))
    # every cycle starts at the full rate
    s = build_schedule(spec, spe)
    assert s.lr_at(t_0, 0) == pytest.approx(LR0)


@pytest.mark.parametrize("spe", [1, 7])
@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"anneal_strategy": "linear"},
        {"max_lr": 0.5, "pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0},
        {"max_lr": 0.05, "pct_start": 0.5, "anneal_strategy": "linear"},
    ],
)
def test_one_cycle_matches_torch(spe, opts):
    spec = job({"kind": "one_cycle", **opts})
    kw = {k: v for k, v in opts.items() if k != "max_lr"}
    max_lr = opts.get("max_lr", LR0)

    def make(o):
        return tls.OneCycleLR(o, max_lr, total_steps=12 * spe, cycle_momentum=False, **kw)

    close(ours(spec, spe), torch_lrs(make, 12, spe, "step"))


def test_one_cycle_degenerate_first_phase_and_past_the_end():
    # pct_start * total_steps == 1: torch divides by zero; we start at the peak.
    spec = job({"kind": "one_cycle", "pct_start": 0.1}, epochs=10)
    s = build_schedule(spec, 1)
    assert s.lr_at(0, 0) == pytest.approx(LR0)
    final = LR0 / 25.0 / 1e4
    assert s.lr_at(9, 0) == pytest.approx(final)
    assert s.lr_at(12, 0) == s.lr_at(9, 0)  # past the run: the final rate


@pytest.mark.parametrize("spe", [1, 7])
@pytest.mark.parametrize(
    ("schedule", "make", "per"),
    [
        ({"kind": "constant"}, lambda o, spe: tls.ConstantLR(o, 1.0, total_iters=0), "epoch"),
        ({"kind": "exponential", "gamma": 0.8}, lambda o, spe: tls.ExponentialLR(o, 0.8), "epoch"),
        ({"kind": "cosine"}, lambda o, spe: tls.CosineAnnealingLR(o, 12 * spe), "step"),
        (
            {"kind": "one_cycle"},
            lambda o, spe: tls.OneCycleLR(o, LR0, total_steps=12 * spe, cycle_momentum=False),
            "step",
        ),
    ],
)
@pytest.mark.parametrize(
    "warmup", [{"steps": 5, "start_factor": 0.1}, {"epochs": 2, "start_factor": 0.25}]
)
def test_warmup_multiplies_torch_linear_lr(spe, schedule, make, per, warmup):
    spec = job({**schedule, "warmup": warmup})
    w = warmup.get("steps") or warmup["epochs"] * spe
    factor = torch_lrs(
        lambda o: tls.LinearLR(o, warmup["start_factor"], 1.0, total_iters=w), 12, spe, "step", 1.0
    )
    base = torch_lrs(lambda o: make(o, spe), 12, spe, per)
    close(ours(spec, spe), [f * b for f, b in zip(factor, base, strict=True)])
    assert ours(spec, spe)[0] == pytest.approx(base[0] * warmup["start_factor"])


def test_warmup_from_zero_and_step_decay():
    spec = job({"kind": "step_decay", "decay_step": 1, "warmup": {"steps": 4}}, epochs=3)
    got = ours(spec, 2)
    decay = [LR0 * 0.5 ** math.floor((1 + e) / 1) for e in range(3) for _ in range(2)]
    factors = [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    close(got, [f * d for f, d in zip(factors, decay, strict=True)])


def test_lr_per_epoch_is_first_step_of_each_epoch_and_none_for_plateau():
    spec = job({"kind": "cosine"}, epochs=4)
    s = build_schedule(spec, 3)
    assert lr_per_epoch(spec, 3) == [s.lr_at(e, 0) for e in range(4)]
    assert lr_per_epoch(spec, 3) == pytest.approx(
        [
            0.1,
            0.1 * (1 + math.cos(math.pi / 4)) / 2,
            0.05,
            0.1 * (1 + math.cos(3 * math.pi / 4)) / 2,
        ]
    )
    assert lr_per_epoch(job({"kind": "reduce_on_plateau"}), 3) is None


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        build_schedule(job({"kind": "constant"}), 0)
    with pytest.raises(ValueError):
        build_schedule(job({"kind": "constant"}), 3).lr_at(-1, 0)


# --------------------------------------------------------------------------- reduce_on_plateau


def metric_walk(rng: random.Random, n: int) -> list[float]:
    """A noisy, plateauing walk on the 1/64 grid (exact in float32 and float64)."""
    k, out = 256, []
    for _ in range(n):
        k += rng.choice([-6, -3, -1, 0, 0, 0, 0, 1, 2, 3])
        out.append(k / 64)
    return out


PLATEAU_CASES = [
    {"patience": 2},
    {"patience": 0},
    {"patience": 3, "cooldown": 2},
    {"patience": 1, "cooldown": 1, "factor": 0.5, "min_lr": 0.125},
    {"patience": 2, "min_delta": 1 / 16, "factor": 0.5},
    {"patience": 4, "min_delta": 1 / 32, "cooldown": 3, "factor": 0.25, "min_lr": 1 / 256},
]


@pytest.mark.parametrize("case", PLATEAU_CASES)
@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("seed", range(4))
def test_reduce_on_plateau_matches_keras(case, mode, seed):
    metrics = metric_walk(random.Random(seed), 40)
    spec = job({"kind": "reduce_on_plateau", "monitor": "val_loss", "mode": mode, **case}, lr=1.0)
    sched = build_schedule(spec, 3)
    assert isinstance(sched, ReduceOnPlateau)
    opt = keras.optimizers.SGD(learning_rate=1.0)
    kw = {k: v for k, v in case.items()}
    cb = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", mode=mode, **kw)
    cb.set_model(SimpleNamespace(optimizer=opt))
    cb.on_train_begin()
    reductions = 0
    for epoch, value in enumerate(metrics):
        before = sched.lr_at(epoch, 0)
        cb.on_epoch_end(epoch, {"val_loss": value})
        sched.on_epoch_end(epoch, {"val_loss": value})
        keras_lr = float(keras.ops.convert_to_numpy(opt.learning_rate))
        assert sched.lr_at(epoch + 1, 0) == pytest.approx(keras_lr, rel=1e-6), epoch
        assert (sched.wait, sched.cooldown_counter) == (cb.wait, cb.cooldown_counter), epoch
        assert sched.best == cb.best
        reductions += sched.lr_at(epoch + 1, 0) < before
    assert reductions > 0  # the sequences do exercise a reduction


def test_reduce_on_plateau_missing_metric_changes_nothing_and_floor_holds():
    spec = job({"kind": "reduce_on_plateau", "monitor": "loss", "patience": 0, "factor": 0.5,
                "min_lr": 0.03})  # fmt: skip
    s = build_schedule(spec, 1)
    assert isinstance(s, ReduceOnPlateau)
    s.on_epoch_end(0, {"val_loss": 1.0})
    assert (s.best, s.wait, s.lr_at(1, 0)) == (None, 0, LR0)
    for epoch in range(6):
        s.on_epoch_end(epoch, {"loss": 1.0})
    assert s.lr_at(7, 0) == 0.03  # 0.1 -> 0.05 -> max(0.025, 0.03), then no lower


def test_reduce_on_plateau_with_warmup_scales_the_plateau_rate():
    spec = job({"kind": "reduce_on_plateau", "monitor": "loss", "patience": 0,
                "warmup": {"steps": 4, "start_factor": 0.5}})  # fmt: skip
    s = build_schedule(spec, 2)
    assert [s.lr_at(0, 0), s.lr_at(0, 1)] == pytest.approx([0.05, 0.0625])
    s.on_epoch_end(0, {"loss": 1.0})
    s.on_epoch_end(1, {"loss": 1.0})  # no improvement, patience 0: reduce to 0.01
    assert s.lr_at(1, 1) == pytest.approx(0.01 * (0.5 + 0.5 * 3 / 4))
    assert s.lr_at(2, 0) == pytest.approx(0.01)


# --------------------------------------------------------------------------- state round-trip

ALL_KINDS = [
    {"kind": "constant", "warmup": {"steps": 3}},
    {"kind": "step_decay", "decay_step": 2},
    {"kind": "multistep", "milestones": [2, 4]},
    {"kind": "exponential"},
    {"kind": "cosine"},
    {"kind": "cosine_restarts", "t_0": 2, "t_mult": 2},
    {"kind": "one_cycle"},
    {"kind": "reduce_on_plateau", "monitor": "val_loss", "patience": 1, "cooldown": 1},
]


@pytest.mark.parametrize("schedule", ALL_KINDS, ids=lambda s: s["kind"])
def test_state_dict_round_trip_continues_identically(schedule):
    spec, spe = job(schedule, epochs=10), 3
    metrics = [{"val_loss": v} for v in metric_walk(random.Random(7), 10)]
    a = build_schedule(spec, spe)
    for epoch in range(4):
        a.on_epoch_end(epoch, metrics[epoch])
    state = json.loads(json.dumps(a.state_dict(), allow_nan=False))
    b = build_schedule(spec, spe)
    b.load_state_dict(state)
    for epoch in range(4, 10):
        assert [a.lr_at(epoch, i) for i in range(spe)] == [b.lr_at(epoch, i) for i in range(spe)]
        a.on_epoch_end(epoch, metrics[epoch])
        b.on_epoch_end(epoch, metrics[epoch])
    assert a.state_dict() == b.state_dict()


def test_state_dict_is_strict_json_with_non_finite_best_and_checks_kind():
    s = build_schedule(job({"kind": "reduce_on_plateau", "monitor": "loss"}), 1)
    s.on_epoch_end(0, {"loss": float("nan")})  # Keras: a NaN first value becomes the best
    state = json.loads(json.dumps(s.state_dict(), allow_nan=False))
    t = build_schedule(job({"kind": "reduce_on_plateau", "monitor": "loss"}), 1)
    t.load_state_dict(state)
    assert isinstance(t, ReduceOnPlateau)
    assert t.best is not None and math.isnan(t.best)
    with pytest.raises(ValueError, match="reduce_on_plateau"):
        build_schedule(job({"kind": "cosine"}), 1).load_state_dict(state)

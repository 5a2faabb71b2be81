"""Learning-rate schedules of ``ScheduleSpec`` as pure-python objects.

Torch-free: the API imports this to show the LR per epoch before a job is
queued, and the engine sets ``param_group["lr"] = schedule.lr_at(epoch, i)``
before every optimizer step. Closed forms (not stateful torch schedulers)
keep a resumed run exactly on the curve and make ``lr_at`` cheap to call
for any step.

Each kind matches a reference, checked step by step in tests/ml/test_schedules.py:

- ``constant``: the optimizer's lr.
- ``step_decay``: ``lr0 * rate ** floor((1 + epoch) / decay_step)`` (the seed
  article's ``lr_decay`` under Keras ``LearningRateScheduler``; epoch from 0,
  so with decay_step 1 the first epoch is already decayed, as there).
- ``multistep`` / ``exponential``: torch ``MultiStepLR`` / ``ExponentialLR``
  stepped once per epoch (duplicate milestones decay twice, as in torch).
- ``cosine``: torch ``CosineAnnealingLR`` stepped per optimizer step, with
  ``T_max = t_max_epochs * steps_per_epoch`` (default: the whole run); past
  T_max it rises again, as torch's does.
- ``cosine_restarts``: torch ``CosineAnnealingWarmRestarts`` stepped with the
  fractional epoch ``epoch + step_in_epoch / steps_per_epoch`` (so the first
  step of every cycle runs at the full rate).
- ``one_cycle``: torch ``OneCycleLR`` (two phases) with ``total_steps =
  epochs * steps_per_epoch``. Only the learning rate cycles: torch's default
  momentum/beta1 cycling is not reproduced. Steps past the end keep the final
  rate (torch raises instead).
- ``reduce_on_plateau``: Keras ``ReduceLROnPlateau`` (wait and cooldown
  counters, min_delta, min_lr), updated in :meth:`LRSchedule.on_epoch_end`.

Warmup (any kind): the schedule's rate times a linear factor going from
``start_factor`` to 1 over W optimizer steps (``warmup.steps``, or
``warmup.epochs * steps_per_epoch``) -- torch ``LinearLR(start_factor,
total_iters=W)`` stepped per optimizer step, chained multiplicatively. For
reduce_on_plateau the factor scales the plateau's own rate, which is what
gets reduced (the warmup never counts as a reduction).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from ml.monitor import decode_float, encode_float, is_improvement, resolve_mode
from ml.spec import (
    ConstantSchedule,
    CosineRestartsSchedule,
    CosineSchedule,
    ExponentialSchedule,
    JobSpec,
    MultiStepSchedule,
    OneCycleSchedule,
    ReduceOnPlateauSchedule,
    StepDecaySchedule,
    Warmup,
)


class LRSchedule:
    """Base: the LR in effect for each optimizer step, warmup included.

    Subclasses implement :meth:`_base_lr` (the schedule without warmup).
    ``epoch`` counts from 0; ``step_in_epoch`` is the index of the optimizer
    step inside that epoch (0 .. steps_per_epoch - 1).
    """

    kind: ClassVar[str] = ""

    def __init__(self, base_lr: float, steps_per_epoch: int, warmup: Warmup | None) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.base_lr = base_lr
        self.steps_per_epoch = steps_per_epoch
        self.warmup_steps = warmup_steps(warmup, steps_per_epoch)
        self.warmup_start = warmup.start_factor if warmup is not None else 1.0

    def lr_at(self, epoch: int, step_in_epoch: int) -> float:
        if epoch < 0 or step_in_epoch < 0:
            raise ValueError(f"epoch and step_in_epoch must be >= 0, got {epoch}, {step_in_epoch}")
        return self._base_lr(epoch, step_in_epoch) * self._warmup_factor(
            epoch * self.steps_per_epoch + step_in_epoch
        )

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Metric-driven schedules react here; the others ignore it."""

    def state_dict(self) -> dict[str, Any]:
        # Closed-form schedules are a function of (epoch, step): nothing to save
        # beyond the kind, which guards against loading into the wrong schedule.
        return {"kind": self.kind}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"state is for schedule {state.get('kind')!r}, not {self.kind!r}")

    def _base_lr(self, epoch: int, step_in_epoch: int) -> float:
        raise NotImplementedError

    def _warmup_factor(self, global_step: int) -> float:
        if self.warmup_steps == 0 or global_step >= self.warmup_steps:
            return 1.0
        return self.warmup_start + (1.0 - self.warmup_start) * global_step / self.warmup_steps


def warmup_steps(warmup: Warmup | None, steps_per_epoch: int) -> int:
    """Length of the warmup in optimizer steps (0 without warmup)."""
    if warmup is None:
        return 0
    if warmup.steps is not None:
        return warmup.steps
    assert warmup.epochs is not None  # the spec validator guarantees one of the two
    return warmup.epochs * steps_per_epoch


class Constant(LRSchedule):
    kind = "constant"

    def _base_lr(self, epoch: int, step_in_epoch: int) -> float:
        return self.base_lr


class StepDecay(LRSchedule):
    kind = "step_decay"

    def __init__(self, spec: StepDecaySchedule, base_lr: float, steps_per_epoch: int) -> None:
        super().__init__(base_lr, steps_per_epoch, spec.warmup)
        self.rate, self.step = spec.decay_rate, spec.decay_step

    def _base_lr(self, epoch: int, step_in_epoch: int) -> float:
        return self.base_lr * self.rate ** math.floor((1 + epoch) / self.step)


class MultiStep(LRSchedule):
    kind = "multistep"

    def __init__(self, spec: MultiStepSchedule, base_lr: float, steps_per_epoch: int) -> None:
        super().__init__(base_lr, steps_per_epoch, spec.warmup)
        self.milestones, self.gamma = sorted(spec.milestones), spec.gamma

    def _base_lr(self, epoch: int, step_in_epoch: int) -> float:
        # torch's closed form: one gamma per milestone already reached (with repeats).
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, epoch)


class Exponential(LRSchedule):
    kind = "exponential"

    def __init__(self, spec: ExponentialSchedule, base_lr: float, steps_per_epoch: int) -> None:
        super().__init__(base_lr, steps_per_epoch, spec.warmup)
        self.gamma = spec.gamma

    def _base_lr(self, epoch: int, step_in_epoch: int) -> float:
        return self.base_lr * self.gamma**epoch


class Cosine(LRSchedule):
    kind = "cosine"

    def __init__(
        self, spec: CosineSchedule, base_lr: float, steps_per_epoch: int, epochs: int
    ) -> None:
        super().__init__(base_lr, steps_per_epoch, spec.warmup)
        self.t_max = (spec.t_max_epochs or epochs) * steps_per_epoch
        self.eta_min = spec.eta_min

    def _base_lr(self, epoch: int, step_in_epoch: int) -> float:
        t = epoch * self.steps_per_epoch + step_in_epoch
        cos = 1 + math.cos(math.pi * t / self.t_max)
        return self.eta_min + (self.base_lr - self.eta_min) * cos / 2


class CosineRestarts(LRSchedule):
    kind = "cosine_restarts"

    def __init__(self, spec: CosineRestartsSchedule, base_lr: float, steps_per_epoch: int) -> None:
        super().__init__(base_lr, steps_per_epoch, spec.warmup)
        self.t_0, self.t_mult, self.eta_min = spec.t_0, spec.t_mult, spec.eta_min

    def _base_lr(self, epoch: int, step_in_epoch: int) -> float:
        # torch CosineAnnealingWarmRestarts.step(epoch) with an explicit epoch,
        # transcribed operation by operation so that float rounding agrees too.
        x = epoch + step_in_epoch / self.steps_per_epoch
        t_0, t_mult = self.t_0, self.t_mult
        if x >= t_0:
            if t_mult == 1:
                t_cur, t_i = x % t_0, float(t_0)
            else:
                n = int(math.log(x / t_0 * (t_mult - 1) + 1, t_mult))
                t_cur = x - t_0 * (t_mult**n - 1) / (t_mult - 1)
                t_i = float(t_0 * t_mult**n)
        else:
            t_cur, t_i = x, float(t_0)
        return (
            self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2
        )


class OneCycle(LRSchedule):
    kind = "one_cycle"

    def __init__(
        self, spec: OneCycleSchedule, base_lr: float, steps_per_epoch: int, epochs: int
    ) -> None:
        super().__init__(base_lr, steps_per_epoch, spec.warmup)
        self.total_steps = epochs * steps_per_epoch
        self.max_lr = spec.max_lr if spec.max_lr is not None else base_lr
        self.initial_lr = self.max_lr / spec.div_factor
        self.min_lr = self.initial_lr / spec.final_div_factor
        self.peak_step = float(spec.pct_start * self.total_steps) - 1  # torch's phase-1 end
        self.cos = spec.anneal_strategy == "cos"

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.cos:
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _base_lr(self, epoch: int, step_in_epoch: int) -> float:
        step = min(epoch * self.steps_per_epoch + step_in_epoch, self.total_steps - 1)
        if step <= self.peak_step:
            start, end, lo, hi = 0.0, self.peak_step, self.initial_lr, self.max_lr
        else:
            start, end = self.peak_step, float(self.total_steps - 1)
            lo, hi = self.max_lr, self.min_lr
        # torch divides by zero when pct_start * total_steps == 1; the phase has
        # no length then, so it is over: take its end value.
        pct = (step - start) / (end - start) if end != start else 1.0
        return self._anneal(lo, hi, pct)


class ReduceOnPlateau(LRSchedule):
    """Keras ``ReduceLROnPlateau.on_epoch_end``, line for line.

    A missing monitor is skipped (Keras warns and does nothing). The rate is
    only reduced while above ``min_lr`` and never below it.
    """

    kind = "reduce_on_plateau"

    def __init__(self, spec: ReduceOnPlateauSchedule, base_lr: float, steps_per_epoch: int) -> None:
        super().__init__(base_lr, steps_per_epoch, spec.warmup)
        self.spec = spec
        self.mode = resolve_mode(spec.monitor, spec.mode)
        self.lr = base_lr  # the plateau's current rate (before warmup)
        self.best: float | None = None
        self.wait = 0
        self.cooldown_counter = 0

    def _base_lr(self, epoch: int, step_in_epoch: int) -> float:
        return self.lr

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        current = metrics.get(self.spec.monitor)
        if current is None:
            return
        current = float(current)
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if is_improvement(current, self.best, self.mode, self.spec.min_delta):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.spec.patience and self.lr > self.spec.min_lr:
                self.lr = max(self.lr * self.spec.factor, self.spec.min_lr)
                self.cooldown_counter = self.spec.cooldown
                self.wait = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "lr": self.lr,
            "best": encode_float(self.best),
            "wait": self.wait,
            "cooldown_counter": self.cooldown_counter,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.lr = float(state["lr"])
        self.best = decode_float(state["best"])
        self.wait = int(state["wait"])
        self.cooldown_counter = int(state["cooldown_counter"])


def build_schedule(spec: JobSpec, steps_per_epoch: int) -> LRSchedule:
    """The schedule of ``spec``; the base rate is ``spec.optimizer.lr``."""
    s, lr = spec.schedule, spec.optimizer.lr
    if isinstance(s, ConstantSchedule):
        return Constant(lr, steps_per_epoch, s.warmup)
    if isinstance(s, StepDecaySchedule):
        return StepDecay(s, lr, steps_per_epoch)
    if isinstance(s, MultiStepSchedule):
        return MultiStep(s, lr, steps_per_epoch)
    if isinstance(s, ExponentialSchedule):
        return Exponential(s, lr, steps_per_epoch)
    if isinstance(s, CosineSchedule):
        return Cosine(s, lr, steps_per_epoch, spec.epochs)
    if isinstance(s, CosineRestartsSchedule):
        return CosineRestarts(s, lr, steps_per_epoch)
    if isinstance(s, OneCycleSchedule):
        return OneCycle(s, lr, steps_per_epoch, spec.epochs)
    return ReduceOnPlateau(s, lr, steps_per_epoch)


def lr_per_epoch(spec: JobSpec, steps_per_epoch: int) -> list[float] | None:
    """The LR at the first step of each epoch; None when it depends on metrics."""
    if isinstance(spec.schedule, ReduceOnPlateauSchedule):
        return None
    schedule = build_schedule(spec, steps_per_epoch)
    return [schedule.lr_at(epoch, 0) for epoch in range(spec.epochs)]

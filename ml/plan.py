"""What a spec implies before it runs (torch-free): sizes, steps, LR per epoch.

``POST /v1/specs/validate`` returns :func:`describe`'s answer; the engine's
data module takes its split sizes from :func:`split_sizes` (defined in
``ml.checks``, which needs it too, and re-exported here) so that the plan and
the run agree.

Counting follows Keras ``fit``: the last partial batch of an epoch is kept, so
``steps_per_epoch = ceil(n_train / batch_size)``; a batch larger than the
training split gives one step per epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ml.architecture import graph_shapes, parameter_count
from ml.checks import DatasetInfo, split_sizes
from ml.schedules import lr_per_epoch
from ml.shapes import LayerShape
from ml.spec import JobSpec

__all__ = ["SpecPlan", "describe", "split_sizes", "steps_per_epoch"]


@dataclass(frozen=True)
class SpecPlan:
    parameter_count: int
    train_samples: int
    validation_samples: int
    steps_per_epoch: int
    total_steps: int
    lr_per_epoch: list[float] | None  # at each epoch's first step; None: metric-driven
    layers: list[LayerShape]  # the built model's layers, the head last


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps in one epoch, the last partial batch included (Keras)."""
    return math.ceil(n_train / batch_size)


def describe(spec: JobSpec, info: DatasetInfo) -> SpecPlan:
    """The plan of a spec that passed ``ml.checks.check_spec`` (else it may raise)."""
    n_train, n_val = split_sizes(info.n_samples, spec.dataset.validation_split)
    steps = steps_per_epoch(n_train, spec.dataset.batch_size)
    shapes = graph_shapes(spec, info)
    return SpecPlan(
        parameter_count=parameter_count(spec, info),
        train_samples=n_train,
        validation_samples=n_val,
        steps_per_epoch=steps,
        total_steps=spec.epochs * steps,
        lr_per_epoch=lr_per_epoch(spec, steps),
        layers=shapes.layers if shapes is not None else [],
    )

"""Which jobs can train together as one pack (``ml.pack``), decided from their specs alone.

Torch-free: the API and the worker call these to group a sweep's trials before anything
runs.

- :func:`pack_key`: specs with equal keys train as one pack. The key is the spec with the
  numbers that leave every tensor's shape (and the program's structure) alone taken out:
  the optimizer's numbers (lr, betas, momentum, eps), weight decay, l1/l2, label smoothing,
  the dropout rate (``dropout: 0`` builds no dropout layer, and such a member packs with
  those that have one: ``ml.pack_net``), clipping thresholds, the schedule's parameters
  (its kind stays), the whole ``init`` and the ``seed`` (each member is built and
  initialised on its own, as a solo run builds it), and the per-run bookkeeping that runs
  on the host for each member on its own: ``early_stopping``, ``checkpointing`` and the
  extra ``metrics``. Everything else -- the model graph and its widths, batch size, epochs,
  dataset, the optimizer's and schedule's and clipping's kinds, loss, device, precision --
  is in the key.
- :func:`pack_blocker`: why a spec cannot train in a pack at all (a feature the packed
  engine does not vectorise), or None. Such a trial runs as an ordinary solo job.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ml.graph_spec import GraphModel, Layer
from ml.spec import CNNModel, JobSpec, LossSpec, MLPModel

# Optimizer fields that are numbers (every other field -- kind, nesterov, centered -- stays).
_OPTIMIZER_NUMBERS = ("lr", "beta1", "beta2", "eps", "momentum", "rho", "initial_accumulator_value")
_CLIPPING_NUMBERS = ("max_norm", "clip_value", "clip_factor", "eps")
PACKED_OPTIMIZERS = ("sgd", "adam", "adamw")
# Graph ops the packed engine runs as batched kernels (a chain of them: no `inputs`).
PACKED_OPS = frozenset(
    {
        "dense", "dropout", "activation", "batch_norm", "layer_norm", "flatten", "conv2d",
        "depthwise_conv2d", "separable_conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool",
        "global_max_pool",
    }
)  # fmt: skip


def pack_key(spec: JobSpec) -> str:
    """A short digest: equal for specs that can train as one pack (see the module doc)."""
    doc: dict[str, Any] = spec.model_dump(mode="json")
    opt = doc["optimizer"]
    for name in _OPTIMIZER_NUMBERS:
        opt.pop(name, None)
    doc.pop("regularization")
    if doc["clipping"] is not None:
        for name in _CLIPPING_NUMBERS:
            doc["clipping"].pop(name, None)
    doc["schedule"] = {"kind": doc["schedule"]["kind"]}
    for name in ("init", "seed", "early_stopping", "checkpointing", "metrics"):
        doc.pop(name, None)
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def pack_blocker(spec: JobSpec) -> str | None:
    """Why ``spec`` cannot train in a pack (a sentence for the sweep's log), or None."""
    if spec.warm_start is not None:
        return "warm_start starts from another run's weights: trained solo"
    if spec.optimizer.kind not in PACKED_OPTIMIZERS:
        return f"optimizer {spec.optimizer.kind!r} is not vectorised (sgd, adam, adamw are)"
    if spec.resources.precision != "fp32":
        return f"resources.precision {spec.resources.precision!r}: mixed precision is not packed"
    if spec.resources.compile:
        return "resources.compile: compiled models are not packed"
    if spec.resources.devices > 1:
        return "resources.devices > 1: data-parallel runs are not packed"
    if _augments(spec):
        return "augmentation: per-run random image transforms are not vectorised"
    if isinstance(spec.loss, LossSpec) and spec.loss.class_weight is not None:
        return "loss.class_weight is not vectorised"
    if any(c.encoding == "embedding" for c in spec.dataset.columns.values()):
        return "dataset.columns with embedding encoding are not vectorised"
    return _model_blocker(spec)


def _augments(spec: JobSpec) -> bool:
    a = spec.augmentation
    if a is None:
        return False
    zoom = a.zoom_range
    return bool(
        a.rotation_range or a.width_shift_range or a.height_shift_range or a.shear_range
        or (zoom != (1.0, 1.0) if isinstance(zoom, tuple) else zoom)
        or a.horizontal_flip or a.vertical_flip
    )  # fmt: skip


def _model_blocker(spec: JobSpec) -> str | None:
    model = spec.model
    if isinstance(model, MLPModel | CNNModel):
        return None
    if not isinstance(model, GraphModel):
        return f"model.kind {model.kind!r} is not vectorised (mlp, cnn and chain graphs are)"
    return graph_blocker(model.layers)


def graph_blocker(layers: list[Layer]) -> str | None:
    for i, layer in enumerate(layers):
        if layer.op not in PACKED_OPS:
            return f"model.layers.{i}: op {layer.op!r} is not vectorised"
        if layer.inputs is not None and list(layer.inputs) != [-1]:
            return f"model.layers.{i}: a graph with `inputs` (not a chain) is not vectorised"
        if not layer.trainable:
            return f"model.layers.{i}: frozen layers are not vectorised"
    return None

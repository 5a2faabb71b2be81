"""Class weights (``loss.class_weight``) with Keras ``fit(class_weight=...)`` semantics.

Keras turns class weights into per-sample weights (a class left out weighs 1) and
reduces the weighted per-sample losses with ``sum_over_batch_size``: the batch loss is
``sum_i w[y_i] * loss_i / batch_size`` -- divided by the number of samples, not by the
sum of their weights (unlike ``torch.nn.CrossEntropyLoss(weight=...)``, which divides
by the weights' sum). ``balanced`` is scikit-learn's
``compute_class_weight("balanced")``: ``n_samples / (n_classes * count)`` on the
training split. Only the training loss is weighted; ``val_loss`` is not (Keras applies
``class_weight`` to the training data only).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from ml.data import DeviceData
from ml.models import LossFn
from ml.spec import JobSpec, LossSpec


def class_weight_tensor(spec: JobSpec, y_train: Tensor, n_classes: int) -> Tensor | None:
    """One float32 weight per class on ``y_train``'s device, or None for no weighting."""
    loss = spec.loss
    if not isinstance(loss, LossSpec) or loss.class_weight is None:
        return None
    if loss.class_weight == "balanced":
        counts = torch.bincount(y_train.long(), minlength=n_classes).double()
        weights = len(y_train) / (n_classes * counts.clamp(min=1))
        return weights.float()
    weights = torch.ones(n_classes, dtype=torch.float32)
    for label, weight in loss.class_weight.items():
        weights[int(label)] = weight  # ml.checks: every label is a class of the dataset
    return weights.to(y_train.device)


def weighted_cross_entropy(weights: Tensor, label_smoothing: float) -> LossFn:
    def loss(out: Tensor, y: Tensor) -> Tensor:
        per_sample = F.cross_entropy(out, y, reduction="none", label_smoothing=label_smoothing)
        return (per_sample * weights[y]).mean()

    return loss


def weighted_loss(spec: JobSpec, data: DeviceData, device: torch.device) -> LossFn | None:
    """The class-weighted training loss, or None when the spec sets no class weights."""
    weights = class_weight_tensor(spec, data.y_train, data.info.n_classes)
    if weights is None:
        return None
    return weighted_cross_entropy(weights.to(device), spec.regularization.label_smoothing)

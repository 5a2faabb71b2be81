"""Which way a monitored metric should go, and what counts as an improvement.

Torch-free (the API resolves monitors while validating specs). Shared by
early stopping, reduce-on-plateau and best-checkpoint retention so that all
three agree on "better", exactly as Keras's ``MonitorCallback`` makes its
subclasses agree.
"""

from __future__ import annotations

import math
from typing import Literal

from ml.metric_names import direction

Mode = Literal["min", "max"]

# Keras 3 (keras.src.callbacks.monitor_callback) resolves mode="auto" from the
# metric object's ``_direction``; these are the built-in metrics whose
# direction is "up" in Keras 3.15 (checked against the installed package).
_KERAS_UP = frozenset(
    {
        "accuracy",
        "acc",
        "auc",
        "binary_accuracy",
        "binary_io_u",
        "categorical_accuracy",
        "concordance_correlation",
        "cosine_similarity",
        "f1_score",
        "fbeta_score",
        "pearson_correlation",
        "precision",
        "r2_score",
        "recall",
        "sparse_categorical_accuracy",
        "sparse_top_k_categorical_accuracy",
        "top_k_categorical_accuracy",
    }
)


def resolve_mode(monitor: str, mode: Literal["auto", "min", "max"]) -> Mode:
    """Direction of ``monitor``; ``auto`` follows Keras.

    Keras 3: strip a ``val_`` prefix; ``loss`` is minimised; an extra metric of
    ``spec.metrics`` goes its own way (``mae``, ``rmse`` down; ``f1_macro``, ``auroc``,
    ``r2`` ... up: ``ml.metric_names.direction``); a built-in metric
    with direction "up" (accuracy, auc, precision, recall, f1, r2, ...) is
    maximised, every other built-in metric minimised. Where Keras 3 would raise
    (a name it cannot place) we fall back to the Keras 2 rule instead: max if
    the name contains "acc" or "auc", else min -- the engine never produces
    such names for a monitor (``ml.checks`` rejects them), so this only
    matters for callers outside the job spec.
    """
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    if name == "loss":
        return "min"
    extra = direction(name)  # spec.metrics: mae and rmse go down, the others up
    if extra is not None:
        return extra
    if name in _KERAS_UP:
        return "max"
    if "acc" in name or "auc" in name:
        return "max"
    return "min"


def is_improvement(current: float, reference: float | None, mode: Mode, min_delta: float) -> bool:
    """Keras ``MonitorCallback._is_improvement``.

    min mode: ``current < reference - min_delta``; max mode:
    ``current > reference + min_delta`` (strict, so equal is no improvement).
    A ``None`` reference (nothing seen yet) is always improved on, and NaN
    never improves on anything, exactly as the Keras comparisons behave.
    """
    if reference is None:
        return True
    delta = abs(min_delta)
    if mode == "min":
        return current + delta < reference
    return current - delta > reference


# State goes into checkpoint metadata as strict JSON, which has no NaN or
# infinities; a metric can be non-finite, so such floats travel as strings.


def encode_float(value: float | None) -> float | str | None:
    """A float for strict JSON: non-finite values become "nan", "inf", "-inf"."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


def decode_float(value: float | str | None) -> float | None:
    """Inverse of :func:`encode_float`."""
    if value is None:
        return None
    return float(value)

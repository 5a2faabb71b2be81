"""The extra metrics a spec can ask for (``metrics: [f1_macro, auroc, ...]``): names only.

Torch-free (the API validates specs with it). What each name means, which task it
fits and which way it improves live here; ``ml.metrics`` computes them.

- classification: ``precision_<avg>``, ``recall_<avg>``, ``f1_<avg>`` with ``<avg>``
  one of ``macro``, ``micro``, ``weighted`` (scikit-learn's ``average=``),
  ``balanced_accuracy``, ``auroc`` (binary; one-vs-rest macro for more classes) and
  ``top_<k>_accuracy`` (k from 1 to 99; k below the number of classes);
- regression: ``mae``, ``rmse``, ``r2``.

Each is logged per epoch for the training split under its name and for the
validation split as ``val_<name>``.
"""

from __future__ import annotations

import re
from typing import Literal

Task = Literal["classification", "regression"]

AVERAGES = ("macro", "micro", "weighted")
CLASSIFICATION_FIXED = (
    *(f"{base}_{avg}" for base in ("precision", "recall", "f1") for avg in AVERAGES),
    "balanced_accuracy",
    "auroc",
)
REGRESSION = ("mae", "rmse", "r2")
_TOP_K = re.compile(r"top_([1-9][0-9]?)_accuracy")
LOWER_IS_BETTER = frozenset({"mae", "rmse"})

METRIC_PATTERN = (
    r"^((precision|recall|f1)_(macro|micro|weighted)|balanced_accuracy|auroc"
    r"|top_[1-9][0-9]?_accuracy|mae|rmse|r2)$"
)
ALL_NAMES_HINT = ", ".join((*CLASSIFICATION_FIXED, "top_3_accuracy (any k)", *REGRESSION))


def top_k(name: str) -> int | None:
    """k of ``top_<k>_accuracy``, else None."""
    m = _TOP_K.fullmatch(name)
    return int(m.group(1)) if m else None


def metric_task(name: str) -> Task | None:
    """The task an extra metric belongs to; None for a name that is no extra metric."""
    if name in CLASSIFICATION_FIXED or top_k(name) is not None:
        return "classification"
    if name in REGRESSION:
        return "regression"
    return None


def is_metric_name(name: str) -> bool:
    return metric_task(name) is not None


def direction(name: str) -> Literal["min", "max"] | None:
    """Which way an extra metric (or its ``val_`` twin) improves; None if it is none."""
    base = name.removeprefix("val_")
    if not is_metric_name(base):
        return None
    return "min" if base in LOWER_IS_BETTER else "max"


def misfit(name: str, task: Task, n_classes: int) -> str | None:
    """Why ``name`` cannot be computed for this data (None: it can)."""
    fits = metric_task(name)
    if fits is None:
        return f"{name!r} is not a metric: use one of {ALL_NAMES_HINT}"
    if fits != task:
        if task == "regression":
            return (
                f"{name!r} needs class labels and this dataset is a regression: use mae, rmse, r2"
            )
        return f"{name!r} needs a regression target and this dataset has classes"
    k = top_k(name)
    if k is not None and k >= n_classes:
        return (
            f"{name!r} with k={k} is always 1 with {n_classes} classes: use a k below {n_classes}"
        )
    return None

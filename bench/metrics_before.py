"""The epoch-end metric code as it was before the change measured in bench/RESULTS.md
("Two extra metrics", after): kept here only as the ``engine, metrics before`` arm of
``bench/engine_overhead.py --before`` (issue 24). Not used by the engine."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ml.metric_names import AVERAGES, top_k
from ml.metrics import confusion_matrix, per_class_scores, row_auroc_torch, top_k_accuracy


def classification_metrics(
    names: Sequence[str], out: Tensor, target: Tensor, n_classes: int, pred: Tensor | None = None
) -> dict[str, Tensor]:
    """``out``: (N, C) outputs, or (N,) predicted classes when no name needs scores.
    (``pred`` is taken and ignored: the old code computed the argmax here.)"""
    pred = out if out.dim() == 1 else out.argmax(1)
    cm = confusion_matrix(pred, target, n_classes)
    scores = per_class_scores(cm)
    support, present = scores["support"], (scores["support"] + scores["predicted"]) > 0
    n = support.sum()
    values: dict[str, Tensor] = {}
    for name in names:
        base, _, avg = name.rpartition("_")
        if base in ("precision", "recall", "f1") and avg in AVERAGES:
            per = scores[base]
            if avg == "macro":
                values[name] = per[present].mean()
            elif avg == "weighted":
                values[name] = (per * support).sum() / n
            else:  # micro, single-label: every error is one false positive and one negative
                values[name] = cm.diagonal().sum().double() / n
        elif name == "balanced_accuracy":
            values[name] = scores["recall"][support > 0].mean()
        elif name == "auroc":
            values[name] = auroc(out.double().softmax(1), target)
        else:
            k = top_k(name)
            assert k is not None, name
            values[name] = top_k_accuracy(out, target, k)
    return values


def row_auroc(score: Tensor, positive: Tensor) -> Tensor:
    """ROC AUC of each row of ``score`` (C, N) against ``positive`` (C, N), float64.

    The Mann-Whitney statistic (tied scores count one half, as the trapezoids of
    scikit-learn's ROC curve do), all rows at once: one sort, then the average rank
    of each tie group from a running max of group starts and a running min of group
    ends. NaN for a row with no positive or no negative sample. On the CPU it runs in
    NumPy (whose sort is about 5x faster than torch's there); on a GPU in torch.
    """
    if score.device.type == "cpu":
        return torch.from_numpy(_row_auroc_numpy(score.numpy(), positive.numpy()))
    return row_auroc_torch(score, positive)


def _row_auroc_numpy(
    score: NDArray[np.float64], positive: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """:func:`row_auroc` in NumPy, step for step."""
    n = score.shape[1]
    order = np.argsort(score, axis=1)
    ordered = np.take_along_axis(score, order, 1)
    pos = np.take_along_axis(positive, order, 1)
    index = np.broadcast_to(np.arange(n), ordered.shape)
    differs = ordered[:, 1:] != ordered[:, :-1]
    edge = np.ones((len(score), 1), dtype=bool)
    first = np.maximum.accumulate(np.where(np.hstack([edge, differs]), index, 0), axis=1)
    ends = np.where(np.hstack([differs, edge]), index, n - 1)[:, ::-1]
    last = np.minimum.accumulate(ends, axis=1)[:, ::-1]
    rank_sum = (((first + last) / 2 + 1) * pos).sum(1)  # 1-based average ranks
    n_pos = pos.sum(1).astype(np.float64)
    pairs = n_pos * (n - n_pos)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (rank_sum - n_pos * (n_pos + 1) / 2) / pairs
    out: NDArray[np.float64] = np.where(pairs > 0, value, np.nan)
    return out


def auroc(prob: Tensor, target: Tensor) -> Tensor:
    """Binary: the positive class's probability; more classes: one-vs-rest macro."""
    classes = torch.arange(prob.shape[1], device=prob.device).view(-1, 1)
    positive = target.view(1, -1) == classes
    if prob.shape[1] == 2:
        return row_auroc(prob[:, 1].view(1, -1), positive[1:])[0]
    return row_auroc(prob.t().contiguous(), positive).mean()

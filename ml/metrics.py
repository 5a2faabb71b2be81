"""The extra metrics (``spec.metrics``) over a whole split, from accumulated predictions.

A split's outputs are gathered on the training device batch by batch
(:class:`EpochPredictions`: no host copy and no per-step work -- the engine hands them
over at its sync points with the argmax it computes for the accuracy anyway) and the metrics are
computed once, at the end of the epoch, in float64 on that device, with one host read.

Definitions are scikit-learn's, and tests/ml/test_metrics.py holds them to scikit-learn
on the same predictions (to 1e-6):

- precision/recall/F1 with ``average`` macro, micro or weighted over the labels present
  in the targets or the predictions (scikit-learn's default ``labels``), 0 where a
  ratio's denominator is 0 (``zero_division`` default); micro is accuracy for
  single-label classification;
- ``balanced_accuracy``: the mean recall over the classes present in the targets;
- ``auroc``: ROC AUC of the softmax probabilities; the positive class's probability for
  two classes, the one-vs-rest macro average for more (``multi_class="ovr"``). It is
  NaN (logged as such) when a class has no sample in the split, where scikit-learn
  raises;
- ``top_<k>_accuracy``: the target is among the k largest outputs (of tied outputs the
  higher class counts first, as in scikit-learn);
- ``mae``, ``rmse``, ``r2`` (scikit-learn's ``r2_score``: 1.0 for a perfect fit of a
  constant target, 0.0 for an imperfect one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ml.metric_names import AVERAGES, top_k

# Only these need the full outputs; the rest need the predicted class alone.
_NEED_SCORES_PREFIXES = ("auroc", "top_")


def needs_scores(names: Sequence[str]) -> bool:
    return any(n.startswith(_NEED_SCORES_PREFIXES) for n in names)


@dataclass
class EpochPredictions:
    """A split's outputs and targets, kept on the device until the epoch ends."""

    classification: bool
    keep_scores: bool  # classification: keep the outputs (auroc, top-k), not only the argmax
    outputs: list[Tensor] = field(default_factory=list)
    targets: list[Tensor] = field(default_factory=list)

    @staticmethod
    def for_names(names: Sequence[str], classification: bool) -> EpochPredictions:
        return EpochPredictions(classification, needs_scores(names))

    def add(self, out: Tensor, target: Tensor, predicted: Tensor | None = None) -> None:
        """A batch's outputs and targets; ``predicted``: its argmax, if already computed."""
        out = out.detach()
        if self.classification and not self.keep_scores:
            out = predicted if predicted is not None else out.argmax(1)
        self.outputs.append(out)
        self.targets.append(target.detach())

    def clear(self) -> None:
        self.outputs.clear()
        self.targets.clear()

    def compute(self, names: Sequence[str], n_classes: int) -> dict[str, float]:
        """Every metric in ``names`` over what was added; {} when nothing was."""
        if not names or not self.outputs:
            return {}
        out, target = torch.cat(self.outputs), torch.cat(self.targets)
        if self.classification:
            values = classification_metrics(names, out, target, n_classes)
        else:
            values = regression_metrics(names, out, target)
        stacked = torch.stack([values[n] for n in names]).tolist()  # the one host read
        return dict(zip(names, (float(v) for v in stacked), strict=True))


def confusion_matrix(pred: Tensor, target: Tensor, n_classes: int) -> Tensor:
    """Rows: true class, columns: predicted class (scikit-learn's orientation); int64."""
    index = target.long() * n_classes + pred.long()
    return torch.bincount(index, minlength=n_classes * n_classes).view(n_classes, n_classes)


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    return torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num))


def per_class_scores(cm: Tensor) -> dict[str, Tensor]:
    """precision, recall, f1 (float64, 0 on a zero denominator) and support per class."""
    cm = cm.double()
    tp, support, predicted = cm.diagonal(), cm.sum(1), cm.sum(0)
    return {
        "precision": _ratio(tp, predicted),
        "recall": _ratio(tp, support),
        "f1": _ratio(2 * tp, support + predicted),
        "support": support,
        "predicted": predicted,
    }


def classification_metrics(
    names: Sequence[str], out: Tensor, target: Tensor, n_classes: int
) -> dict[str, Tensor]:
    """``out``: (N, C) outputs, or (N,) predicted classes when no name needs scores."""
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


def top_k_accuracy(out: Tensor, target: Tensor, k: int) -> Tensor:
    """Ties broken as scikit-learn breaks them: of equal outputs, the higher class first
    (two classes: class 1 only when its probability is above 0.5, i.e. the argmax)."""
    if out.shape[1] == 2:
        return (out.argmax(1) == target).double().mean()
    flipped = out.flip(1).sort(dim=1, descending=True, stable=True).indices[:, :k]
    top = out.shape[1] - 1 - flipped
    return (top == target.view(-1, 1)).any(1).double().mean()


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


def row_auroc_torch(score: Tensor, positive: Tensor) -> Tensor:
    """:func:`row_auroc` in torch, on any device (the GPU path)."""
    n = score.shape[1]
    ordered, order = score.sort(dim=1)
    pos = positive.gather(1, order)
    index = torch.arange(n, device=score.device).expand_as(ordered)
    differs = ordered[:, 1:] != ordered[:, :-1]
    edge = torch.ones_like(differs[:, :1])
    first = torch.where(torch.cat([edge, differs], 1), index, 0).cummax(1).values
    last = torch.where(torch.cat([differs, edge], 1), index, n - 1).flip(1).cummin(1).values
    rank_sum = ((first + last.flip(1)).double() / 2 + 1).mul(pos).sum(1)  # 1-based ranks
    n_pos = pos.sum(1).double()
    pairs = n_pos * (n - n_pos)
    value = (rank_sum - n_pos * (n_pos + 1) / 2) / pairs.clamp(min=1)
    return torch.where(pairs > 0, value, torch.full_like(value, float("nan")))


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


def regression_metrics(names: Sequence[str], out: Tensor, target: Tensor) -> dict[str, Tensor]:
    pred, y = out.double().reshape(-1), target.double().reshape(-1)
    err = pred - y
    ss_res = (err * err).sum()
    values: dict[str, Tensor] = {}
    for name in names:
        if name == "mae":
            values[name] = err.abs().mean()
        elif name == "rmse":
            values[name] = (ss_res / err.numel()).sqrt()
        else:  # r2
            ss_tot = ((y - y.mean()) ** 2).sum()
            perfect = torch.where(ss_res == 0, 1.0, 0.0).to(ss_res)
            values[name] = torch.where(ss_tot > 0, 1 - ss_res / ss_tot.clamp(min=1e-300), perfect)
    return values

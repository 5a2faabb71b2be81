"""The extra metrics (``spec.metrics``) over a whole split, from accumulated predictions.

A split's outputs are gathered on the training device batch by batch
(:class:`EpochPredictions`: no host copy and no per-step work -- the engine hands them
over at its sync points with the argmax it computes for the accuracy anyway) and the
metrics are computed once, at the end of the epoch: the scores built from the confusion
matrix from that C × C matrix read to the host, AUROC of the float32 softmax
probabilities on the host for CPU outputs (NumPy: one sort of every class's scores)
and on the device for GPU outputs, the device's
values read back in one copy (bench/RESULTS.md: the cost of two extra metrics).

Definitions are scikit-learn's, and tests/ml/test_metrics.py holds them to scikit-learn
on the same predictions (to 1e-6):

- precision/recall/F1 with ``average`` macro, micro or weighted over the labels present
  in the targets or the predictions (scikit-learn's default ``labels``), 0 where a
  ratio's denominator is 0 (``zero_division`` default); micro is accuracy for
  single-label classification;
- ``balanced_accuracy``: the mean recall over the classes present in the targets;
- ``auroc``: ROC AUC of the softmax probabilities (float32, as the model computes its
  outputs); the positive class's probability for
  two classes, the one-vs-rest macro average for more (``multi_class="ovr"``). It is
  NaN (logged as such) when a class has no sample in the split, where scikit-learn
  raises;
- ``top_<k>_accuracy``: the target is among the k largest outputs (of tied outputs the
  higher class counts first, as in scikit-learn);
- ``mae``, ``rmse``, ``r2`` (scikit-learn's ``r2_score``: 1.0 for a perfect fit of a
  constant target, 0.0 for an imperfect one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    predicted: list[Tensor] = field(default_factory=list)  # with keep_scores: the argmaxes

    @staticmethod
    def for_names(names: Sequence[str], classification: bool) -> EpochPredictions:
        return EpochPredictions(classification, needs_scores(names))

    def add(self, out: Tensor, target: Tensor, predicted: Tensor | None = None) -> None:
        """A batch's outputs and targets; ``predicted``: its argmax, if already computed."""
        out = out.detach()
        if self.classification:
            predicted = predicted if predicted is not None else out.argmax(1)
            if self.keep_scores:
                self.predicted.append(predicted)
            else:
                out = predicted
        self.outputs.append(out)
        self.targets.append(target.detach())

    def clear(self) -> None:
        self.outputs.clear()
        self.targets.clear()
        self.predicted.clear()

    def compute(self, names: Sequence[str], n_classes: int) -> dict[str, float]:
        """Every metric in ``names`` over what was added; {} when nothing was."""
        if not names or not self.outputs:
            return {}
        out, target = torch.cat(self.outputs), torch.cat(self.targets)
        if self.classification:
            pred = torch.cat(self.predicted) if self.predicted else None
            values = classification_metrics(names, out, target, n_classes, pred)
            return read_values(names, values)
        return read_values(names, regression_metrics(names, out, target))


Value = Tensor | float  # a 0-d tensor on the device, or a number already on the host


def read_values(names: Sequence[str], values: Mapping[str, Value]) -> dict[str, float]:
    """The values as floats: those still on the device in one read."""
    on_device = [n for n in names if isinstance(values[n], Tensor)]
    read = torch.stack([values[n] for n in on_device]).tolist() if on_device else []  # type: ignore[misc]
    got = dict(zip(on_device, read, strict=True))
    return {n: float(got[n]) if n in got else float(values[n]) for n in names}


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


def _per_class(cm: NDArray[np.int64]) -> dict[str, NDArray[np.float64]]:
    """:func:`per_class_scores` of a confusion matrix on the host (C × C: a few
    microseconds in NumPy where a dozen small device kernels cost a few hundred)."""
    m = cm.astype(np.float64)
    tp, support, predicted = m.diagonal(), m.sum(1), m.sum(0)

    def ratio(num: NDArray[np.float64], den: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    return {
        "precision": ratio(tp, predicted),
        "recall": ratio(tp, support),
        "f1": ratio(2 * tp, support + predicted),
        "support": support,
        "predicted": predicted,
    }


def class_probabilities(out: Tensor) -> Tensor:
    """Softmax probabilities in float32 (the model's own precision: the predictions AUROC
    ranks), one row per class ((C, N): each class's scores contiguous, as AUROC reads
    them), computed over the transposed outputs (about 4x cheaper on the CPU than a
    softmax along rows of C values)."""
    return torch.softmax(out.float().t(), 0)


def classification_metrics(
    names: Sequence[str], out: Tensor, target: Tensor, n_classes: int, pred: Tensor | None = None
) -> dict[str, Value]:
    """``out``: (N, C) outputs, or (N,) predicted classes when no name needs scores. The
    confusion matrix is read to the host (C × C) for the scores built from it; AUROC runs
    on the host for CPU outputs and on the device otherwise (see :func:`auroc`)."""
    values: dict[str, Value] = {}
    from_cm = [n for n in names if n == "balanced_accuracy" or n.rpartition("_")[2] in AVERAGES]
    if from_cm:
        if pred is None:
            pred = out if out.dim() == 1 else out.argmax(1)
        cm = confusion_matrix(pred, target, n_classes).cpu().numpy()
        scores = _per_class(cm)
        support, present = scores["support"], (scores["support"] + scores["predicted"]) > 0
        n = support.sum()
        for name in from_cm:
            base, _, avg = name.rpartition("_")
            if name == "balanced_accuracy":
                values[name] = float(scores["recall"][support > 0].mean())
            elif avg == "macro":
                values[name] = float(scores[base][present].mean())
            elif avg == "weighted":
                values[name] = float((scores[base] * support).sum() / n)
            else:  # micro, single-label: every error is one false positive and one negative
                values[name] = float(cm.diagonal().sum() / n)
    for name in names:
        if name == "auroc":
            values[name] = auroc(class_probabilities(out), target)
        elif name not in values:
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


def row_auroc_torch(score: Tensor, positive: Tensor) -> Tensor:
    """ROC AUC of each row of ``score`` (C, N) against ``positive`` (C, N), float64, in
    torch on any device (the GPU path): the Mann-Whitney statistic (tied scores count one
    half, as the trapezoids of scikit-learn's ROC curve do), all rows at once -- one sort,
    then the average rank of each tie group from a running max of group starts and a
    running min of group ends. NaN for a row with no positive or no negative sample."""
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


def auroc_numpy(
    score: NDArray[np.float32], target: NDArray[np.int64], classes: Sequence[int]
) -> NDArray[np.float64]:
    """ROC AUC of each row of ``score`` (R, N; probabilities, float32) for the positive
    class ``classes[r]`` (the CPU path), exactly :func:`row_auroc_torch`'s Mann-Whitney
    statistic with a positive sample's rank the mean rank of its tie group,
    ``(left + right + 1) / 2`` from binary searches in its row's sorted scores (the
    second one for tied scores only).

    Every row is sorted in one call; every sample is a positive of at most one row, so
    all positives are searched at once in the rows laid end to end, each score keyed by
    ``row << 32 | its float32 bit pattern`` (a non-negative float32's bits order as its
    value does, so the keys are sorted). No argsort, no gathers, no loop over classes.
    NaN for a row without a positive or a negative."""
    rows, n = score.shape
    ordered = np.sort(score, axis=1)
    high = np.arange(rows, dtype=np.int64)[:, None] << 32
    keys = (high | ordered.view(np.uint32).astype(np.int64)).ravel()
    row_of = np.full(int(max(int(target.max(initial=0)), max(classes))) + 1, -1)
    row_of[list(classes)] = np.arange(rows)
    sample_row = row_of[target]
    positive = np.flatnonzero(sample_row >= 0)
    pos_rows = sample_row[positive]
    bits = score[pos_rows, positive].view(np.uint32).astype(np.int64)
    pos_keys = np.sort((pos_rows.astype(np.int64) << 32) | bits)  # sorted: faster searches
    pos_rows = pos_keys >> 32
    base = pos_rows * n
    first = np.searchsorted(keys, pos_keys, "left")
    # A score's tie group ends where the next key differs: with float32 probabilities that
    # is almost always the next one, so only the tied positives get a second search.
    after = np.minimum(first + 1, keys.size - 1)
    tied = np.flatnonzero((keys[after] == pos_keys) & (first + 1 < keys.size))
    end = first + 1
    end[tied] = np.searchsorted(keys, pos_keys[tied], "right")
    left, right = first - base, end - base
    rank_sum = np.bincount(pos_rows, weights=(left + right + 1) / 2, minlength=rows)
    n_pos = np.bincount(pos_rows, minlength=rows).astype(np.float64)
    pairs = n_pos * (n - n_pos)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (rank_sum - n_pos * (n_pos + 1) / 2) / pairs
    out: NDArray[np.float64] = np.where(pairs > 0, value, np.nan)
    return out


def auroc(prob: Tensor, target: Tensor) -> Value:
    """``prob``: (C, N) class probabilities (:func:`class_probabilities`). Binary: the
    positive class's; more classes: the one-vs-rest macro average. On the CPU in NumPy
    (:func:`auroc_numpy`); on a GPU all classes at once, on the device
    (:func:`row_auroc_torch`)."""
    n_classes = prob.shape[0]
    if prob.device.type == "cpu":
        if n_classes == 2:
            return float(auroc_numpy(prob[1:].numpy(), target.numpy(), [1])[0])
        return float(auroc_numpy(prob.numpy(), target.numpy(), range(n_classes)).mean())
    classes = torch.arange(n_classes, device=prob.device).view(-1, 1)
    positive = target.view(1, -1) == classes
    if n_classes == 2:
        return row_auroc_torch(prob[1:], positive[1:])[0]
    return row_auroc_torch(prob, positive).mean()


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

"""The extra metrics equal scikit-learn's on the same predictions (ml.metrics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from ml.metric_names import direction, metric_task, misfit
from ml.metrics import EpochPredictions, auroc_numpy, class_probabilities, row_auroc_torch

CLASSIFICATION = [
    f"{b}_{a}" for b in ("precision", "recall", "f1") for a in ("macro", "micro", "weighted")
] + ["balanced_accuracy", "auroc"]


def reference(name: str, y: np.ndarray, logits: np.ndarray) -> float:
    """scikit-learn's value of ``name`` for labels ``y`` and outputs ``logits``."""
    pred = logits.argmax(1)
    base, _, avg = name.rpartition("_")
    fn = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}
    if base in fn:
        return float(fn[base](y, pred, average=avg, zero_division=0))
    if name == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(y, pred))
    if name == "auroc":  # of the probabilities the engine ranks (float32 softmax)
        p = class_probabilities(torch.from_numpy(logits)).t().numpy()
        if p.shape[1] == 2:
            return float(skm.roc_auc_score(y, p[:, 1]))
        return float(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    prob = torch.from_numpy(logits).double().softmax(1).numpy()
    k = int(name.split("_")[1])
    if prob.shape[1] == 2:  # scikit-learn takes the positive class's score alone
        return float(skm.top_k_accuracy_score(y, prob[:, 1], k=k))
    return float(skm.top_k_accuracy_score(y, prob, k=k, labels=np.arange(prob.shape[1])))


def accumulate(names: list[str], logits: np.ndarray, y: np.ndarray, batch: int) -> dict[str, float]:
    acc = EpochPredictions.for_names(names, classification=True)
    for lo in range(0, len(y), batch):
        acc.add(torch.from_numpy(logits[lo : lo + batch]), torch.from_numpy(y[lo : lo + batch]))
    return acc.compute(names, logits.shape[1])


@pytest.mark.parametrize("n_classes", [2, 3, 7])
@pytest.mark.parametrize("seed", [0, 1])
def test_classification_metrics_equal_sklearn(n_classes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 301
    y = rng.integers(0, n_classes, n)
    y[:n_classes] = np.arange(n_classes)  # every class present (AUROC one-vs-rest needs it)
    # Informative but imperfect outputs; rounded so that some scores tie (AUROC ties).
    logits = (rng.normal(size=(n, n_classes)) + 1.5 * np.eye(n_classes)[y]).astype(np.float32)
    logits = np.round(logits, 1)
    names = CLASSIFICATION + [f"top_{k}_accuracy" for k in range(1, n_classes)]
    got = accumulate(names, logits, y, batch=32)
    for name in names:
        assert got[name] == pytest.approx(reference(name, y, logits), abs=1e-6), name


def test_a_class_never_predicted_nor_present_is_left_out_of_macro_like_sklearn() -> None:
    # 4 outputs, but class 3 is neither a target nor a prediction; class 2 is predicted
    # and never a target (precision 0, no recall).
    y = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    logits = np.zeros((8, 4), dtype=np.float32)
    for i, c in enumerate([0, 1, 1, 1, 2, 0, 1, 2]):
        logits[i, c] = 1.0
    names = [n for n in CLASSIFICATION if n != "auroc"]
    got = accumulate(names, logits, y, batch=3)
    for name in names:
        assert got[name] == pytest.approx(reference(name, y, logits), abs=1e-6), name


@pytest.mark.parametrize("n_classes", [2, 5])
def test_the_torch_auroc_path_of_gpus_equals_sklearn_too(n_classes: int) -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, n_classes, 400)
    y[:n_classes] = np.arange(n_classes)
    logits = np.round(rng.normal(size=(400, n_classes)) + np.eye(n_classes)[y], 1)
    prob = torch.from_numpy(logits).softmax(1)
    positive = torch.from_numpy(y).view(1, -1) == torch.arange(n_classes).view(-1, 1)
    per_class = row_auroc_torch(prob.t().contiguous(), positive)
    for c in range(n_classes):
        expected = skm.roc_auc_score(y == c, prob[:, c].numpy())
        assert float(per_class[c]) == pytest.approx(expected, abs=1e-9)


def test_auroc_is_nan_when_a_class_is_absent() -> None:
    y = np.zeros(5, dtype=np.int64)
    logits = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    assert np.isnan(accumulate(["auroc"], logits, y, batch=5)["auroc"])


@pytest.mark.parametrize("constant", [False, True])
def test_regression_metrics_equal_sklearn(constant: bool) -> None:
    rng = np.random.default_rng(3)
    y = np.full(97, 2.5) if constant else rng.normal(size=97) * 10
    out = (y + rng.normal(size=97)).astype(np.float32).reshape(-1, 1)
    target = y.astype(np.float32).reshape(-1, 1)
    acc = EpochPredictions.for_names(["mae", "rmse", "r2"], classification=False)
    for lo in range(0, 97, 10):
        acc.add(torch.from_numpy(out[lo : lo + 10]), torch.from_numpy(target[lo : lo + 10]))
    got = acc.compute(["mae", "rmse", "r2"], 0)
    t, p = target.ravel(), out.ravel()
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(t, p), abs=1e-6)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(t, p), abs=1e-6)
    assert got["r2"] == pytest.approx(skm.r2_score(t, p), abs=1e-6)


def test_r2_of_a_perfect_fit_on_a_constant_target_is_one_like_sklearn() -> None:
    y = torch.full((4, 1), 3.0)
    acc = EpochPredictions.for_names(["r2"], classification=False)
    acc.add(y, y)
    assert acc.compute(["r2"], 0)["r2"] == skm.r2_score(y.ravel(), y.ravel()) == 1.0


def test_names_tasks_and_directions() -> None:
    assert metric_task("f1_macro") == "classification"
    assert metric_task("top_5_accuracy") == "classification"
    assert metric_task("r2") == "regression"
    assert metric_task("f1") is None and metric_task("top_0_accuracy") is None
    assert direction("val_mae") == "min" and direction("rmse") == "min"
    assert direction("val_f1_macro") == "max" and direction("auroc") == "max"
    assert direction("val_r2") == "max" and direction("loss") is None
    assert misfit("r2", "classification", 3) is not None
    assert misfit("auroc", "regression", 0) is not None
    assert misfit("top_3_accuracy", "classification", 3) is not None
    assert misfit("top_2_accuracy", "classification", 3) is None


def test_the_cpu_auroc_ranks_ties_as_sklearn_per_class() -> None:
    """auroc_numpy (all classes in one search over keyed float32 bits) against scikit-learn
    and the torch path, with heavy ties, a class of no sample (NaN) and a class of all."""
    rng = np.random.default_rng(11)
    for n_classes in (3, 4, 7):
        y = rng.integers(0, n_classes - 1, 200)  # the last class has no sample
        score = np.round(rng.random((n_classes, 200)), 1).astype(np.float32)
        got = auroc_numpy(score, y, range(n_classes))
        positive = torch.from_numpy(y).view(1, -1) == torch.arange(n_classes).view(-1, 1)
        torch_path = row_auroc_torch(torch.from_numpy(score), positive).numpy()
        for c in range(n_classes - 1):
            expected = skm.roc_auc_score(y == c, score[c])
            assert got[c] == pytest.approx(expected, abs=1e-12) == torch_path[c]
        assert np.isnan(got[-1]) and np.isnan(torch_path[-1])
    assert np.isnan(auroc_numpy(np.ones((1, 5), np.float32), np.ones(5, np.int64), [1])[0])

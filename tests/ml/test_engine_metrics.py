"""spec.metrics through the engine: logged per epoch, whole-split, equal to scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from sklearn import metrics as skm

from ml.data import load_dataset, prepare
from ml.engine import train
from ml.models import build_model
from ml.sinks import MemoryCheckpointSink, MemoryMetricSink
from ml.spec import JobSpec

CPU = torch.device("cpu")


def spec_for(name: str, **body: object) -> JobSpec:
    dataset = {"source": {"kind": "builtin", "name": name}, **body.pop("dataset", {})}  # type: ignore[dict-item]
    return JobSpec.model_validate({"dataset": dataset, **body})


def final_validation_outputs(
    spec: JobSpec, sink: MemoryCheckpointSink
) -> tuple[np.ndarray, np.ndarray]:
    """The trained model's outputs on the validation split, and its targets."""
    data = prepare(spec, load_dataset(spec), CPU)
    model = build_model(spec, data.info)
    model.load_state_dict(st_load(sink.saved[-1][0].weights))
    model.eval()
    assert data.x_val is not None and data.y_val is not None
    with torch.no_grad():
        out = model(data.x_val)
    return out.numpy().astype(np.float64), data.y_val.numpy()


def test_classification_metrics_are_logged_for_both_splits_and_equal_sklearn() -> None:
    names = ["f1_macro", "precision_weighted", "recall_micro", "balanced_accuracy", "auroc",
             "top_2_accuracy"]  # fmt: skip
    spec = spec_for("wine", epochs=2, metrics=names, dataset={"batch_size": 16})
    metrics, checkpoints = MemoryMetricSink(), MemoryCheckpointSink()
    train(spec, metrics=metrics, checkpoints=checkpoints)
    for name in names:
        assert len(metrics.series(name)) == len(metrics.series(f"val_{name}")) == 2
    # Training metrics cover the epoch's whole split: micro recall is its accuracy.
    assert metrics.series("recall_micro") == pytest.approx(metrics.series("accuracy"), abs=1e-9)
    logits, y = final_validation_outputs(spec, checkpoints)
    pred, prob = logits.argmax(1), torch.from_numpy(logits).softmax(1).numpy()
    expected = {
        "f1_macro": skm.f1_score(y, pred, average="macro"),
        "precision_weighted": skm.precision_score(y, pred, average="weighted", zero_division=0),
        "recall_micro": skm.recall_score(y, pred, average="micro"),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "auroc": skm.roc_auc_score(y, prob, multi_class="ovr"),
        "top_2_accuracy": skm.top_k_accuracy_score(y, prob, k=2),
    }
    for name, value in expected.items():
        assert metrics.series(f"val_{name}")[-1] == pytest.approx(value, abs=1e-6), name


def test_regression_metrics_equal_sklearn() -> None:
    spec = spec_for("diabetes", epochs=2, metrics=["mae", "rmse", "r2"])
    metrics, checkpoints = MemoryMetricSink(), MemoryCheckpointSink()
    train(spec, metrics=metrics, checkpoints=checkpoints)
    out, y = final_validation_outputs(spec, checkpoints)
    p, t = out.ravel(), y.ravel()
    assert metrics.series("val_mae")[-1] == pytest.approx(skm.mean_absolute_error(t, p), abs=1e-6)
    assert metrics.series("val_rmse")[-1] == pytest.approx(
        skm.root_mean_squared_error(t, p), rel=1e-6
    )
    assert metrics.series("val_r2")[-1] == pytest.approx(skm.r2_score(t, p), abs=1e-6)
    # No accuracy for a regression, even though its outputs are now kept.
    assert not metrics.series("accuracy") and len(metrics.series("mae")) == 2


@pytest.mark.parametrize(
    ("name", "metric", "baseline"),
    [("diabetes", "mae", 1e5), ("iris", "f1_macro", -1.0), ("iris", "auroc", -1.0)],
)
def test_an_extra_metric_drives_early_stopping_in_its_own_direction(
    name: str, metric: str, baseline: float
) -> None:
    # Every epoch beats the baseline only in the metric's direction (mae down, f1 up):
    # resolved the wrong way, patience 2 would stop the run at epoch 1.
    stopping = {"monitor": f"val_{metric}", "patience": 2, "baseline": baseline}
    spec = spec_for(name, epochs=3, metrics=[metric], early_stopping=stopping)
    metrics = MemoryMetricSink()
    result = train(spec, metrics=metrics)
    assert result.status_reason == "completed" and len(metrics.series(f"val_{metric}")) == 3
    wrong = spec.model_copy(update={"early_stopping": spec.early_stopping.model_copy(
        update={"mode": "max" if metric == "mae" else "min"})})  # fmt: skip
    assert train(wrong).status_reason == "early_stopped"

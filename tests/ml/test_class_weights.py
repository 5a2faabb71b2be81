"""loss.class_weight equals Keras 3 fit(class_weight=...) on the same batch; balanced
equals scikit-learn's compute_class_weight."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from ml.class_weights import class_weight_tensor
from ml.data import load_dataset, prepare
from ml.spec import JobSpec
from ml.trainer import Trainer

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
from keras.src.trainers.data_adapters.data_adapter_utils import (  # noqa: E402
    class_weight_to_sample_weights,
)

CPU = torch.device("cpu")


def spec_for(class_weight: object, **body: object) -> JobSpec:
    source = {"kind": "builtin", "name": "wine"}
    return JobSpec.model_validate(
        {"dataset": {"source": source}, "loss": {"class_weight": class_weight}, **body}
    )


def keras_loss(logits: torch.Tensor, y: torch.Tensor, weights: dict[int, float]) -> float:
    """What Keras 3 fit() minimises for this batch: class weights as sample weights."""
    sample_weight = class_weight_to_sample_weights(y.numpy(), weights)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return float(loss(y.numpy(), logits.detach().numpy(), sample_weight=sample_weight))


@pytest.mark.parametrize("class_weight", ["balanced", {"0": 2.0, "2": 0.25}])
def test_training_loss_equals_keras_on_the_same_batch(class_weight: object) -> None:
    spec = spec_for(class_weight, dataset={"source": {"kind": "builtin", "name": "wine"}})
    data = prepare(spec, load_dataset(spec), CPU)
    trainer = Trainer(spec, data, CPU)
    xb, yb = data.x_train[:40], data.y_train[:40]
    with torch.no_grad():
        logits = trainer.model(xb)
    weights = class_weight_tensor(spec, data.y_train, 3)
    assert weights is not None
    as_dict = {c: float(w) for c, w in enumerate(weights)}
    if class_weight != "balanced":
        assert as_dict == {0: 2.0, 1: 1.0, 2: 0.25}  # a class left out weighs 1, as in Keras
    ours = trainer.train_loss_fn(logits, yb).item()
    assert ours == pytest.approx(keras_loss(logits, yb, as_dict), rel=1e-6)
    # Normalised by the batch size, not by the sum of the weights (torch's weight=...).
    torch_style = torch.nn.functional.cross_entropy(logits, yb, weight=weights).item()
    assert ours != pytest.approx(torch_style, rel=1e-3)


def test_balanced_equals_sklearn_on_the_training_split() -> None:
    spec = spec_for("balanced")
    data = prepare(spec, load_dataset(spec), CPU)
    weights = class_weight_tensor(spec, data.y_train, 3)
    y = data.y_train.numpy()
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert weights is not None
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)


def test_validation_loss_is_not_weighted() -> None:
    weighted = spec_for({"0": 5.0, "1": 0.1})
    plain = JobSpec.model_validate({"dataset": weighted.dataset.model_dump()})
    data = prepare(weighted, load_dataset(weighted), CPU)
    torch.manual_seed(0)
    a = Trainer(weighted, data, CPU)
    torch.manual_seed(0)
    b = Trainer(plain, data, CPU)
    assert a.evaluate()["val_loss"] == b.evaluate()["val_loss"]
    xb, yb = data.x_train[:32], data.y_train[:32]
    with torch.no_grad():
        out = a.model(xb)
    assert a.train_loss_fn(out, yb).item() != pytest.approx(b.train_loss_fn(out, yb).item())

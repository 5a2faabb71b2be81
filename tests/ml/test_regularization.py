"""Regularization: Keras kernel regularizers, dropout, decoupled weight decay, label smoothing."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ml.checks import DatasetInfo
from ml.data import LoadedDataset, prepare
from ml.models import kernel_weights, regularization_penalty
from ml.spec import JobSpec
from ml.trainer import Trainer

CPU = torch.device("cpu")


def tabular(n: int = 64, f: int = 6, k: int = 3, seed: int = 0) -> LoadedDataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f)).astype(np.float32)
    y = rng.integers(0, k, n)
    return LoadedDataset(x, y, DatasetInfo("classification", "tabular", n, f, None, k))


def trainer(ds: LoadedDataset | None = None, **body) -> Trainer:
    spec = JobSpec.model_validate(
        {"dataset": {"source": {"kind": "builtin", "name": "iris"}, "validation_split": 0.25,
                     "shuffle": False}, **body}
    )  # fmt: skip
    torch.manual_seed(0)
    return Trainer(spec, prepare(spec, ds or tabular(), CPU), CPU)


def batch(t: Trainer, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    return t.data.x_train[:n], t.data.y_train[:n]


MLP_BN = {"kind": "mlp", "hidden_units": [8, 5], "normalization": "batch"}


def test_penalty_is_keras_formula_over_kernels_only():
    t = trainer(model=MLP_BN, regularization={"l1": 0.01, "l2": 0.002})
    linears = [m for m in t.model.modules() if isinstance(m, nn.Linear)]
    assert len(t.kernels) == 3 and all(
        k is m.weight for k, m in zip(t.kernels, linears, strict=True)
    )
    expected = sum(0.01 * m.weight.abs().sum() + 0.002 * (m.weight**2).sum() for m in linears)
    assert torch.allclose(t.penalty(), expected)
    # biases and BatchNorm parameters are not in it
    everything = sum(0.01 * p.abs().sum() + 0.002 * (p**2).sum() for p in t.model.parameters())
    assert not torch.allclose(t.penalty(), everything)
    assert regularization_penalty(kernel_weights(t.model), 0.0, 0.5).item() == pytest.approx(
        0.5 * sum((m.weight**2).sum().item() for m in linears), rel=1e-6
    )


def test_step_gradient_includes_penalty_and_reported_loss_too():
    body = {"model": MLP_BN, "regularization": {"l1": 0.01, "l2": 0.003},
            "optimizer": {"kind": "sgd", "lr": 0.1}}  # fmt: skip
    t = trainer(**body)
    ref = copy.deepcopy(t.model)
    x, y = batch(t)
    stats = t.step(x, y, 0.1)
    # reference: plain PyTorch with the penalty written out
    out = ref(x)
    data_loss = F.cross_entropy(out, y)
    kernels = [m.weight for m in ref.modules() if isinstance(m, nn.Linear)]
    penalty = sum(0.01 * w.abs().sum() + 0.003 * (w**2).sum() for w in kernels)
    (data_loss + penalty).backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad
    assert stats[0].item() == pytest.approx((data_loss + penalty).item(), rel=1e-6)
    for a, b in zip(t.model.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_dropout_only_in_training_and_evaluation_is_deterministic():
    t = trainer(model={"kind": "mlp", "hidden_units": [32]}, regularization={"dropout": 0.5})
    assert any(isinstance(m, nn.Dropout) for m in t.model.modules())
    first, second = t.evaluate(), t.evaluate()
    assert first == second
    x, _ = batch(t)
    t.model.train()
    assert not torch.equal(t.model(x), t.model(x))
    t.model.eval()
    assert torch.equal(t.model(x), t.model(x))


@pytest.mark.parametrize("kind", ["sgd", "adam", "rmsprop", "adagrad"])
def test_weight_decay_is_decoupled_for_every_optimizer(kind):
    """p ← p - lr·wd·p on kernels only, then the optimizer's own update (Keras 3 order)."""
    lr, wd = 0.05, 0.3
    t = trainer(model=MLP_BN, optimizer={"kind": kind, "lr": lr},
                regularization={"weight_decay": wd})  # fmt: skip
    ref = copy.deepcopy(t.model)
    x, y = batch(t)
    t.step(x, y, lr)
    opt_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam,
               "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad}[kind]  # fmt: skip
    kwargs = {"sgd": {}, "adam": {"eps": 1e-7}, "rmsprop": {"alpha": 0.9, "eps": 1e-7},
              "adagrad": {"eps": 1e-7, "initial_accumulator_value": 0.1}}[kind]  # fmt: skip
    opt = opt_cls(ref.parameters(), lr=lr, **kwargs)
    F.cross_entropy(ref(x), y).backward()
    kernels = {id(m.weight) for m in ref.modules() if isinstance(m, nn.Linear)}
    with torch.no_grad():
        for p in ref.parameters():
            if id(p) in kernels:
                p.mul_(1 - lr * wd)
    opt.step()
    for (name, a), b in zip(t.model.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_adamw_decays_kernels_natively_not_biases():
    lr, wd = 0.01, 0.5
    t = trainer(model=MLP_BN, optimizer={"kind": "adamw", "lr": lr},
                regularization={"weight_decay": wd})  # fmt: skip
    ref = copy.deepcopy(t.model)
    x, y = batch(t)
    t.step(x, y, lr)
    kernels = [m.weight for m in ref.modules() if isinstance(m, nn.Linear)]
    others = [p for p in ref.parameters() if all(p is not k for k in kernels)]
    opt = torch.optim.AdamW(
        [{"params": kernels, "weight_decay": wd}, {"params": others, "weight_decay": 0.0}],
        lr=lr, eps=1e-7,
    )  # fmt: skip
    F.cross_entropy(ref(x), y).backward()
    opt.step()
    for a, b in zip(t.model.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_label_smoothing_in_training_and_validation_loss():
    t = trainer(regularization={"label_smoothing": 0.2}, optimizer={"kind": "sgd", "lr": 1e-9})
    x, y = batch(t)
    expected = F.cross_entropy(t.model(x), y, label_smoothing=0.2)
    assert t.step(x, y, 1e-9)[0].item() == pytest.approx(expected.item(), rel=1e-5)
    t.model.eval()
    val = F.cross_entropy(t.model(t.data.x_val), t.data.y_val, label_smoothing=0.2)
    assert t.evaluate()["val_loss"] == pytest.approx(val.item(), rel=1e-5)

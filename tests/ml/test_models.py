"""Models: parameter_count mirrors the built model; shapes, padding and losses are right."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ml.architecture import TrainError, parameter_count
from ml.checks import DatasetInfo
from ml.graph_model import MapMean as GlobalAvgPool
from ml.models import build_loss, build_model, kernel_weights
from ml.spec import JobSpec

DIGITS = DatasetInfo("classification", "image", 100, 64, (1, 8, 8), 10)
RGB = DatasetInfo("classification", "image", 100, 3 * 7 * 5, (3, 7, 5), 4)
IMG_REG = DatasetInfo("regression", "image", 100, 2 * 6 * 6, (2, 6, 6), 0)
TAB = DatasetInfo("classification", "tabular", 100, 13, None, 3)
REG = DatasetInfo("regression", "tabular", 100, 10, None, 0)


def job(model: dict | None = None, **extra) -> JobSpec:
    body = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, **extra}
    if model is not None:
        body["model"] = model
    return JobSpec.model_validate(body)


MLPS = [
    {"kind": "mlp"},
    {"kind": "mlp", "hidden_units": []},
    {"kind": "mlp", "hidden_units": [7], "normalization": "batch"},
    {"kind": "mlp", "hidden_units": [5, 9, 3], "normalization": "layer", "activation": "gelu"},
]
CNNS = [
    {"kind": "cnn"},
    {"kind": "cnn", "channels": [4], "kernel_size": 5, "normalization": "none"},
    {"kind": "cnn", "channels": [6, 8, 10], "separable": True},
    {
        "kind": "cnn",
        "channels": [3, 5],
        "separable": True,
        "normalization": "layer",
        "kernel_size": 2,
    },
    {"kind": "cnn", "channels": [8, 8, 8, 8], "kernel_size": 4, "activation": "silu"},
]


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize(
    ("model", "info"),
    [(m, i) for m in MLPS for i in (DIGITS, TAB, REG, IMG_REG)]
    + [(c, i) for c in CNNS for i in (DIGITS, RGB, IMG_REG)],
)
def test_parameter_count_equals_built_model(model, info, dropout):
    spec = job(model, regularization={"dropout": dropout})
    built = build_model(spec, info)
    assert parameter_count(spec, info) == sum(p.numel() for p in built.parameters())


@pytest.mark.parametrize("info", [DIGITS, RGB, IMG_REG, TAB, REG])
def test_output_is_logits_per_class_or_one_unit(info):
    for model in [{"kind": "mlp"}] + ([{"kind": "cnn"}] if info.image_shape else []):
        net = build_model(job(model), info).eval()
        shape = info.image_shape or (info.n_features,)
        out = net(torch.randn(3, *shape))
        assert out.shape == (3, info.n_classes if info.task == "classification" else 1)


def test_mlp_layer_order():
    net = build_model(
        job({"kind": "mlp", "hidden_units": [8], "normalization": "batch"},
            regularization={"dropout": 0.5}),
        TAB,
    )  # fmt: skip
    kinds = [type(m) for m in net]
    assert kinds == [nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Linear]


def test_cnn_same_padding_separable_and_head():
    spec = job({"kind": "cnn", "channels": [6], "kernel_size": 3, "separable": True,
                "normalization": "layer"}, regularization={"dropout": 0.2})  # fmt: skip
    net = build_model(spec, RGB)
    depthwise, pointwise = net[0], net[1]
    assert depthwise.groups == 3 and depthwise.kernel_size == (3, 3) and depthwise.bias is None
    assert pointwise.kernel_size == (1, 1) and pointwise.out_channels == 6
    assert isinstance(net[2], nn.GroupNorm) and net[2].num_groups == 1
    x = torch.randn(2, 3, 7, 5)
    assert pointwise(depthwise(x)).shape[-2:] == (7, 5)  # 'same' padding keeps H, W
    kinds = [type(m) for m in net][3:]
    assert kinds == [nn.ReLU, nn.MaxPool2d, GlobalAvgPool, nn.Dropout, nn.Linear]
    h = torch.randn(2, 6, 3, 4)
    assert torch.allclose(GlobalAvgPool()(h), nn.AdaptiveAvgPool2d(1)(h).flatten(1))


def test_cnn_on_one_pixel_side_skips_pooling_there():
    info = DatasetInfo("classification", "image", 10, 9, (1, 1, 9), 2)
    net = build_model(job({"kind": "cnn", "channels": [2, 2, 2, 2, 2]}), info)
    assert net(torch.randn(2, 1, 1, 9)).shape == (2, 2)


def test_kernel_weights_are_linear_and_conv_weights_only():
    net = build_model(job({"kind": "cnn", "channels": [4], "normalization": "batch"}), DIGITS)
    kernels = kernel_weights(net)
    assert [tuple(k.shape) for k in kernels] == [(4, 1, 3, 3), (10, 4)]


def test_models_that_do_not_fit_the_data_raise_train_error():
    with pytest.raises(TrainError, match="image"):
        build_model(job({"kind": "cnn"}), TAB)
    with pytest.raises(TrainError, match="image"):
        parameter_count(job({"kind": "cnn"}), TAB)
    with pytest.raises(TrainError, match="text"):
        build_model(job({"kind": "text"}), TAB)


def test_losses_follow_task_and_override():
    out, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    ce = build_loss(job(regularization={"label_smoothing": 0.1}), TAB)
    assert torch.allclose(ce(out, y), F.cross_entropy(out, y, label_smoothing=0.1))
    # Keras' definition of label smoothing: targets (1 - ε)·onehot + ε/K.
    target = 0.9 * F.one_hot(y, 3) + 0.1 / 3
    keras = -(target * F.log_softmax(out, 1)).sum(1).mean()
    assert torch.allclose(ce(out, y), keras)
    r_out, r_y = torch.randn(5, 1), torch.randn(5, 1)
    assert torch.equal(build_loss(job(), REG)(r_out, r_y), F.mse_loss(r_out, r_y))
    assert torch.equal(build_loss(job(loss="mae"), REG)(r_out, r_y), F.l1_loss(r_out, r_y))
    assert torch.equal(build_loss(job(loss="huber"), REG)(r_out, r_y), F.huber_loss(r_out, r_y))
    with pytest.raises(TrainError):
        build_loss(job(loss="cross_entropy"), REG)
    with pytest.raises(TrainError):
        build_loss(job(loss="mse"), TAB)

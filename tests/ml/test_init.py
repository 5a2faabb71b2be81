"""Initializers: fans in PyTorch layouts, and each kind's statistics against theory."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ml.checks import DatasetInfo
from ml.init import fans, init_kernel, init_weights
from ml.models import build_model
from ml.spec import JobSpec


def init_spec(kind: str, **kw):
    return JobSpec.model_validate(
        {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "init": {"kind": kind, **kw}}
    ).init


@pytest.mark.parametrize(
    "module",
    [nn.Linear(30, 7), nn.Conv2d(6, 4, 3), nn.Conv2d(6, 6, 5, groups=6), nn.Conv2d(4, 8, (2, 3))],
)
def test_fans_match_pytorch(module):
    expected = nn.init._calculate_fan_in_and_fan_out(module.weight)
    assert fans(module.weight.shape) == expected


def test_fans_by_hand():
    assert fans((7, 30)) == (30, 7)  # Linear (out, in)
    assert fans((4, 6, 3, 3)) == (6 * 9, 4 * 9)  # receptive field counts
    assert fans((6, 1, 5, 5)) == (25, 150)  # depthwise: one input channel per filter


# Theory for each kind: (standard deviation of a normal, or bound b of U(-b, b)).
THEORY = {
    "lecun_normal": lambda fi, fo: ("std", math.sqrt(1 / fi)),
    "xavier_normal": lambda fi, fo: ("std", math.sqrt(2 / (fi + fo))),
    "he_normal": lambda fi, fo: ("std", math.sqrt(2 / fi)),
    "xavier_uniform": lambda fi, fo: ("bound", math.sqrt(6 / (fi + fo))),
    "he_uniform": lambda fi, fo: ("bound", math.sqrt(6 / fi)),
}


@pytest.mark.parametrize("kind", sorted(THEORY))
@pytest.mark.parametrize("shape", [(900, 400), (36, 16, 5, 5)])  # Linear (out, in); Conv2d
def test_statistics_against_theory(kind, shape):
    torch.manual_seed(0)
    w = torch.empty(shape)
    init_kernel(w, init_spec(kind))
    what, value = THEORY[kind](*fans(w.shape))
    if what == "std":
        assert abs(w.mean().item()) < 0.02 * value
        assert w.std().item() == pytest.approx(value, rel=0.02)
    else:
        assert value * 0.99 < w.abs().max().item() <= value
        assert w.std().item() == pytest.approx(value / math.sqrt(3), rel=0.02)  # U(-b, b)


def test_random_uniform_is_zero_to_scale():
    torch.manual_seed(0)
    w = torch.empty(500, 400)
    init_kernel(w, init_spec("random_uniform", scale=0.05))
    assert w.min().item() >= 0 and w.max().item() < 0.05
    assert w.mean().item() == pytest.approx(0.025, rel=0.01)
    assert w.std().item() == pytest.approx(0.05 / math.sqrt(12), rel=0.02)


@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (16, 8, 3, 3)])
def test_orthogonal(shape):
    torch.manual_seed(0)
    w = torch.empty(*shape)
    init_kernel(w, init_spec("orthogonal", gain=2.0))
    flat = w.reshape(shape[0], -1)
    rows, cols = flat.shape
    gram = flat @ flat.T if rows <= cols else flat.T @ flat
    assert torch.allclose(gram, 4.0 * torch.eye(min(rows, cols)), atol=1e-4)


INFO = DatasetInfo("classification", "image", 10, 64, (1, 8, 8), 10)


def model_spec(init: dict) -> JobSpec:
    return JobSpec.model_validate(
        {"dataset": {"source": {"kind": "builtin", "name": "digits"}},
         "model": {"kind": "cnn", "channels": [4], "normalization": "batch"}, "init": init}
    )  # fmt: skip


def test_framework_default_keeps_pytorch_init_and_biases():
    spec = model_spec({"kind": "framework_default"})
    torch.manual_seed(3)
    reference = build_model(spec, INFO)
    torch.manual_seed(3)
    net = build_model(spec, INFO)
    init_weights(net, spec.init)
    for a, b in zip(reference.state_dict().values(), net.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert net[0].bias.abs().sum() > 0


def test_bias_zeros_or_default_and_norm_layers_untouched():
    spec = model_spec({"kind": "he_normal", "bias": "zeros"})
    net = build_model(spec, INFO)
    init_weights(net, spec.init)
    assert net[0].bias.abs().sum() == 0 and net[-1].bias.abs().sum() == 0
    assert torch.equal(net[1].weight, torch.ones(4)) and torch.equal(net[1].bias, torch.zeros(4))
    spec = model_spec({"kind": "he_normal", "bias": "framework_default"})
    net = build_model(spec, INFO)
    init_weights(net, spec.init)
    assert net[0].bias.abs().sum() > 0

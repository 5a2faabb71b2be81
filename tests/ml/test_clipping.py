"""Gradient clipping: each kind against its definition; the pre-clip norm is returned."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ml.checks import DatasetInfo
from ml.clipping import clip_gradients
from ml.models import build_model
from ml.spec import (
    AdaptiveClipping,
    GlobalNormClipping,
    JobSpec,
    NormClipping,
    ValueClipping,
)

DIGITS = DatasetInfo("classification", "image", 100, 64, (1, 8, 8), 10)


def model_with_grads(seed: int = 0, scale: float = 5.0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    for p in net.parameters():
        p.grad = torch.randn_like(p) * scale
    return net


def grads(net: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in net.parameters()]


def global_norm(gs: list[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((g.double() ** 2).sum() for g in gs))


def test_no_clipping_returns_global_norm_and_leaves_grads():
    net = model_with_grads()
    before = grads(net)
    norm = clip_gradients(list(net.parameters()), None)
    assert norm.item() == pytest.approx(global_norm(before).item(), rel=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(before, grads(net), strict=True))


@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_global_norm_matches_torch_and_tf_definition(max_norm):
    net, ref = model_with_grads(), model_with_grads()
    before = grads(net)
    pre = clip_gradients(list(net.parameters()), GlobalNormClipping(max_norm=max_norm))
    torch_pre = torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm)
    assert torch.equal(pre, torch_pre)
    for a, b in zip(grads(net), grads(ref), strict=True):
        assert torch.equal(a, b)
    # tf.clip_by_global_norm: g · c / max(‖g‖, c)
    total = global_norm(before)
    for g0, g in zip(before, grads(net), strict=True):
        expected = g0.double() * max_norm / max(total, torch.tensor(max_norm, dtype=torch.double))
        assert torch.allclose(g.double(), expected, rtol=1e-5)


def test_norm_clips_each_parameter_on_its_own():
    net = model_with_grads()
    before = grads(net)
    pre = clip_gradients(list(net.parameters()), NormClipping(max_norm=1.0))
    assert pre.item() == pytest.approx(global_norm(before).item(), rel=1e-6)
    for g0, g in zip(before, grads(net), strict=True):
        n = g0.norm()
        # Keras clipnorm (clip_by_norm): g · c / max(‖g‖, c)
        assert torch.allclose(g, g0 * 1.0 / torch.clamp(n, min=1.0))
        assert g.norm().item() == pytest.approx(min(1.0, n.item()), rel=1e-5)


def test_norm_leaves_small_gradients_alone():
    net = model_with_grads(scale=1e-3)
    before = grads(net)
    clip_gradients(list(net.parameters()), NormClipping(max_norm=1.0))
    assert all(torch.allclose(a, b) for a, b in zip(before, grads(net), strict=True))


def test_value_clamps_elementwise():
    net = model_with_grads()
    before = grads(net)
    pre = clip_gradients(list(net.parameters()), ValueClipping(clip_value=0.5))
    assert pre.item() == pytest.approx(global_norm(before).item(), rel=1e-6)
    for g0, g in zip(before, grads(net), strict=True):
        assert torch.equal(g, g0.clamp(-0.5, 0.5))


def assert_brock_agc(
    ref: nn.Module, before: list[torch.Tensor], after: list[torch.Tensor], spec: AdaptiveClipping
) -> None:
    """Brock et al. 2021 (eq. 3): G_i <- λ·‖W_i‖*/‖G_i‖·G_i where ‖G_i‖/‖W_i‖* > λ,
    ‖W_i‖* = max(‖W_i‖, ε), one unit i = one output row (a conv's output filter, all its
    input channels and taps); a bias is one unit. Checked with float64 norms."""
    clipped_any = False
    for p, g0, g in zip(ref.parameters(), before, after, strict=True):
        w_rows = p.detach().reshape(p.shape[0], -1) if p.ndim > 1 else p.detach().reshape(1, -1)
        g_rows = g0.reshape(w_rows.shape)
        out_rows = g.reshape(w_rows.shape)
        for w_i, g_i, o_i in zip(w_rows, g_rows, out_rows, strict=True):
            w_norm = max(float(torch.sqrt((w_i.double() ** 2).sum())), spec.eps)
            g_norm = float(torch.sqrt((g_i.double() ** 2).sum()))
            if g_norm / w_norm > spec.clip_factor:
                clipped_any = True
                expected = g_i.double() * spec.clip_factor * w_norm / g_norm
                assert torch.allclose(o_i.double(), expected, rtol=1e-5, atol=1e-9)
            else:
                assert torch.equal(o_i, g_i)
    assert clipped_any


def test_adaptive_is_unitwise_agc():
    net = model_with_grads(scale=0.3)
    ref = copy.deepcopy(net)
    before = grads(net)
    spec = AdaptiveClipping(clip_factor=0.05, eps=1e-3)
    pre = clip_gradients(list(net.parameters()), spec)
    assert pre.item() == pytest.approx(global_norm(before).item(), rel=1e-6)
    assert_brock_agc(ref, before, grads(net), spec)


@pytest.mark.parametrize("separable", [False, True])
def test_adaptive_on_convolutions_clips_each_output_filter(separable):
    # 4-d conv kernels (out, in/groups, kh, kw), depthwise ones included: the unit-wise norm
    # is a vector norm over all but the output dimension (it used to raise on dim=(1, 2, 3)).
    spec_body = {"dataset": {"source": {"kind": "builtin", "name": "digits"}},
                 "model": {"kind": "cnn", "channels": [4, 6], "separable": separable}}  # fmt: skip
    torch.manual_seed(0)
    net = build_model(JobSpec.model_validate(spec_body), DIGITS)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    nn.functional.cross_entropy(net(x), y).mul(50.0).backward()
    ref = copy.deepcopy(net)
    before = grads(net)
    assert any(g.ndim == 4 for g in before)
    spec = AdaptiveClipping(clip_factor=0.01, eps=1e-3)
    pre = clip_gradients(list(net.parameters()), spec)
    assert pre.item() == pytest.approx(global_norm(before).item(), rel=1e-5)
    assert_brock_agc(ref, before, grads(net), spec)


def test_parameters_without_grad_are_skipped():
    net = model_with_grads()
    first = next(net.parameters())
    first.grad = None
    for spec in (None, GlobalNormClipping(), NormClipping(), ValueClipping(), AdaptiveClipping()):
        clip_gradients(list(net.parameters()), spec)
    assert first.grad is None

"""The text encoder's attention projections are kernels like any other: init, l1/l2, weight decay.

``nn.MultiheadAttention`` holds its q/k/v projection as a bare Parameter (``in_proj_weight``),
not a Linear; Keras' MultiHeadAttention has a kernel per projection, each with the layer's
initializer and regularizer. Every kernel is treated the same, whatever module holds it.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ml.checks import DatasetInfo
from ml.init import init_weights
from ml.models import build_model, kernel_weights, regularization_penalty
from ml.optim import DECOUPLED_WD, param_groups
from ml.spec import JobSpec

D = 128
TEXT = DatasetInfo("classification", "text", 100, 0, None, 3)


def text_job(**extra: object) -> JobSpec:
    return JobSpec.model_validate(
        {
            "dataset": {"source": {"kind": "builtin", "name": "iris"}},
            "model": {"kind": "text", "encoder": "transformer", "embedding_dim": D,
                      "num_layers": 2, "num_heads": 4, "max_length": 16, "vocab_size": 50},
            **extra,
        }
    )  # fmt: skip


def every_kernel(net: nn.Module) -> list[torch.Tensor]:
    """Keras' kernels, found independently: every weight matrix that is not an embedding
    table (embeddings and normalization parameters are never kernels)."""
    embeddings = {id(m.weight) for m in net.modules() if isinstance(m, nn.Embedding)}
    return [p for p in net.parameters() if p.ndim >= 2 and id(p) not in embeddings]


def attention_projections(net: nn.Module) -> list[torch.Tensor]:
    return [m.in_proj_weight for m in net.modules() if isinstance(m, nn.MultiheadAttention)]


def test_kernels_include_the_attention_projections():
    net = build_model(text_job(), TEXT)
    projections = attention_projections(net)
    assert len(projections) == 2
    kernels = kernel_weights(net)
    assert {id(k) for k in kernels} == {id(k) for k in every_kernel(net)}
    assert all(any(k is p for k in kernels) for p in projections)


def test_l1_l2_penalty_covers_every_kernel_of_the_text_model():
    torch.manual_seed(0)
    net = build_model(text_job(), TEXT)
    expected = sum(0.001 * k.abs().sum() + 0.01 * k.square().sum() for k in every_kernel(net))
    penalty = regularization_penalty(kernel_weights(net), 0.001, 0.01).detach()
    assert penalty.item() == pytest.approx(float(expected.detach()), rel=1e-5)


def test_weight_decay_applies_to_the_attention_projections():
    net = build_model(text_job(), TEXT)
    decayed = [g for g in param_groups(net, 0.1) if g[DECOUPLED_WD] > 0]
    assert len(decayed) == 1
    ids = {id(p) for p in decayed[0]["params"]}
    assert all(id(p) in ids for p in attention_projections(net))
    assert ids == {id(k) for k in every_kernel(net)}


def test_init_reaches_each_attention_projection_with_keras_fans():
    # Keras: one (d, d) kernel per projection, so fan_in = d for each of q, k and v;
    # he_normal's std is √(2/d) (torch's default leaves xavier_uniform over (3d, d): √(1/(2d))).
    torch.manual_seed(0)
    spec = text_job(init={"kind": "he_normal"})
    net = build_model(spec, TEXT)
    init_weights(net, spec.init)
    for weight in attention_projections(net):
        for part in weight.detach().chunk(3):
            assert part.std().item() == pytest.approx(math.sqrt(2 / D), rel=0.05)
    for m in net.modules():
        if isinstance(m, nn.MultiheadAttention):
            assert m.in_proj_bias is not None and m.in_proj_bias.abs().sum() == 0
    # the embeddings keep torch's N(0, 1) under every init kind
    emb = net.get_submodule("embedding").weight.detach()[1:]
    assert emb.std().item() == pytest.approx(1.0, rel=0.05)


def test_orthogonal_init_makes_each_projection_orthogonal():
    spec = text_job(init={"kind": "orthogonal"})
    net = build_model(spec, TEXT)
    init_weights(net, spec.init)
    for weight in attention_projections(net):
        for part in weight.detach().chunk(3):
            assert torch.allclose(part @ part.T, torch.eye(D), atol=1e-4)

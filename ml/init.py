"""Weight initialization of the kernels (Linear, Conv2d and attention projection weights)
from ``spec.init``.

Fans follow PyTorch's layouts: a Linear weight is (out, in); a Conv2d weight is
(out, in/groups, kh, kw), so fan_in = in/groups·kh·kw and fan_out = out·kh·kw
(the receptive field counts; a depthwise conv has fan_in = kh·kw). Normal
initializers draw from an untruncated normal with the stated standard
deviation (PyTorch's convention; Keras draws a truncated normal rescaled to
the same standard deviation). Normalization layers keep weight 1, bias 0.

The text encoder's attention projections (``nn.MultiheadAttention.in_proj_weight``,
a bare Parameter holding q, k and v stacked as (3d, d)) are initialized as Keras'
MultiHeadAttention does: one (d, d) kernel per projection, so fan_in = fan_out = d
for each (PyTorch's own default treats the stack as one (3d, d) matrix). Embedding
tables are not kernels: they keep PyTorch's N(0, 1) under every init kind (Keras'
``Embedding`` draws U(-0.05, 0.05)); the padding row stays zero.
"""

from __future__ import annotations

import math

import torch
from pydantic import TypeAdapter
from torch import Tensor, nn

from ml.models import KERNEL_LAYERS, attention_projections
from ml.spec import FrameworkDefaultInit, InitSpec, OrthogonalInit, RandomUniformInit


def fans(shape: torch.Size | tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of this shape (>= 2 dimensions)."""
    if len(shape) < 2:
        raise ValueError("fans need a weight with at least 2 dimensions")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


@torch.no_grad()
def init_kernel(weight: Tensor, spec: InitSpec) -> None:
    """Fill one kernel in place according to ``spec.kind``."""
    if isinstance(spec, FrameworkDefaultInit):
        return
    if isinstance(spec, RandomUniformInit):
        weight.uniform_(0.0, spec.scale)  # [0, scale), as in the seed article
        return
    if isinstance(spec, OrthogonalInit):
        nn.init.orthogonal_(weight, gain=spec.gain)
        return
    fan_in, fan_out = fans(weight.shape)
    kind = spec.kind
    if kind == "lecun_normal":
        weight.normal_(0.0, math.sqrt(1.0 / fan_in))
    elif kind == "xavier_normal":
        weight.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)))
    elif kind == "xavier_uniform":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        weight.uniform_(-bound, bound)
    elif kind == "he_normal":
        weight.normal_(0.0, math.sqrt(2.0 / fan_in))
    elif kind == "he_uniform":
        bound = math.sqrt(6.0 / fan_in)
        weight.uniform_(-bound, bound)
    else:  # pragma: no cover - the spec's union is closed
        raise ValueError(f"unknown init kind {kind!r}")


def layer_init(module: nn.Module, spec: InitSpec) -> InitSpec:
    """A graph layer's own ``init`` (a kind name, its parameters default) or the spec's."""
    override = getattr(module, "trainforge_kernel", None)
    if override is None or override[0] is None:
        return spec
    return _INIT.validate_python({"kind": override[0], "bias": spec.bias})


_INIT: TypeAdapter[InitSpec] = TypeAdapter(InitSpec)


@torch.no_grad()
def init_weights(model: nn.Module, spec: InitSpec) -> None:
    """Initialize every kernel; biases become zeros unless ``spec.bias`` keeps PyTorch's.

    LSTM/GRU (graph layers): the input kernels as any kernel, the recurrent kernels
    orthogonal (Keras' ``recurrent_initializer``) unless the kind is framework_default."""
    top = spec
    for module in model.modules():
        spec = layer_init(module, top)
        if isinstance(module, nn.RNNBase):
            if isinstance(spec, FrameworkDefaultInit):
                continue
            for k in range(module.num_layers):
                init_kernel(getattr(module, f"weight_ih_l{k}"), spec)
                nn.init.orthogonal_(getattr(module, f"weight_hh_l{k}"))
                if spec.bias == "zeros":
                    getattr(module, f"bias_ih_l{k}").zero_()
                    getattr(module, f"bias_hh_l{k}").zero_()
        elif isinstance(module, KERNEL_LAYERS):
            init_kernel(module.weight, spec)
            if module.bias is not None and spec.bias == "zeros":
                module.bias.zero_()
        elif isinstance(module, nn.MultiheadAttention):
            for projection in attention_projections(module):
                init_kernel(projection, spec)
            if module.in_proj_bias is not None and spec.bias == "zeros":
                module.in_proj_bias.zero_()

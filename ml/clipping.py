"""Gradient clipping from ``spec.clipping``; every kind returns the pre-clip global norm.

- global_norm: g · max_norm / max(‖g‖_global, max_norm) over all gradients together
  (torch.nn.utils.clip_grad_norm_, tf.clip_by_global_norm; PyTorch adds 1e-6
  to the denominator).
- norm: the same rule for each parameter's gradient on its own (Keras ``clipnorm``).
- value: clamp every gradient element to [-clip_value, clip_value] (Keras ``clipvalue``).
- adaptive: unit-wise AGC (Brock et al. 2021, as in timm): each output unit's gradient
  row G_i is scaled to at most clip_factor · max(‖W_i‖, eps); a unit is an output row
  of a Linear weight or an output filter of a conv kernel (all its input channels and
  taps); a 0-d/1-d parameter (a bias) is one unit. Applied to every parameter,
  including the output layer.

All work stays on the device: no ``.item()``, so no host sync per step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ml.spec import (
    AdaptiveClipping,
    ClippingSpec,
    GlobalNormClipping,
    NormClipping,
    ValueClipping,
)


def global_norm(grads: list[Tensor]) -> Tensor:
    """‖(g₁, …, gₙ)‖₂ as clip_grad_norm_ computes it, minus its per-call grouping by
    device and dtype (a model's gradients share both): half the CPU time per step."""
    if not grads:
        return torch.zeros(())
    total: Tensor = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    return total


def _unitwise_norm(x: Tensor) -> Tensor:
    """‖x‖₂ for a 0-d/1-d tensor; else one Euclidean norm per output unit (row), over every
    other dimension: a conv kernel (out, in/groups, kh, kw) gives one norm per output filter.
    A vector norm on purpose: ``Tensor.norm(dim=(1, 2, 3))`` is routed to a matrix norm and
    raises on any 4-d kernel."""
    dims = None if x.ndim <= 1 else tuple(range(1, x.ndim))
    norm: Tensor = torch.linalg.vector_norm(x, dim=dims, keepdim=x.ndim > 1)
    return norm


@torch.no_grad()
def clip_gradients(params: Sequence[Tensor], spec: ClippingSpec | None) -> Tensor:
    """Clip the gradients of ``params`` in place; return their global norm before clipping."""
    with_grad = [p for p in params if p.grad is not None]
    grads = [p.grad for p in with_grad if p.grad is not None]
    total = global_norm(grads)
    if spec is None:
        return total
    if isinstance(spec, GlobalNormClipping):  # clip_grad_norm_'s arithmetic, eps included
        torch._foreach_mul_(grads, torch.clamp(spec.max_norm / (total + 1e-6), max=1.0))
    elif isinstance(spec, NormClipping):
        norms = torch._foreach_norm(grads)
        coefs = [spec.max_norm / torch.clamp(n, min=spec.max_norm) for n in norms]
        torch._foreach_mul_(grads, coefs)
    elif isinstance(spec, ValueClipping):
        torch._foreach_clamp_min_(grads, -spec.clip_value)
        torch._foreach_clamp_max_(grads, spec.clip_value)
    elif isinstance(spec, AdaptiveClipping):
        for p, g in zip(with_grad, grads, strict=True):
            max_norm = _unitwise_norm(p).clamp(min=spec.eps).mul_(spec.clip_factor)
            g_norm = _unitwise_norm(g)
            scale = max_norm / g_norm.clamp(min=1e-6)
            g.copy_(torch.where(g_norm > max_norm, g * scale, g))
    return total

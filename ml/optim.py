"""Optimizers from ``spec.optimizer`` (PyTorch update rules, Keras defaults where noted).

Parameters fall into two groups: kernels (Linear/Conv weights), which get weight
decay, and everything else (biases, normalization parameters), which never do. A layer
with a learning-rate multiplier (a graph layer's ``lr_multiplier``, ``spec.lr_multipliers``
by plan id) has groups of its own: every step sets each group's lr to the schedule's
lr times its multiplier (``set_lr``), so every schedule scales every group, and the
decoupled weight decay (``lr · wd``) follows the group's lr as AdamW's does.

Weight decay is decoupled everywhere, as in Keras 3 and AdamW: before each
step ``p -= lr · weight_decay · p``. AdamW does this natively (its group's
``weight_decay``); for sgd, adam, rmsprop and adagrad we do it ourselves in
``apply_decoupled_weight_decay`` rather than pass their ``weight_decay``
argument, which in PyTorch is a coupled L2 term added to the gradient.

Keras ``rho`` (RMSprop) is PyTorch's ``alpha``. The fused (else foreach)
implementations are used where PyTorch has them for the device: fewer kernel
launches per step, same arithmetic.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from ml.architecture import TrainError
from ml.models import kernel_weights
from ml.spec import (
    AdagradOptimizer,
    AdamOptimizer,
    AdamWOptimizer,
    JobSpec,
    RMSpropOptimizer,
    SGDOptimizer,
)

# Where a fused kernel exists and measured faster than foreach (CPU: 2-core
# benchmark in bench/RESULTS.md; SGD's fused CPU kernel was slower).
_FUSED = {"cpu": {"adam", "adamw", "adagrad"}, "cuda": {"adam", "adamw", "sgd"}}

# Our key in a param group. Not "decoupled_weight_decay": torch's Adam/AdamW read that
# one as a flag, and AdamW with it False silently becomes Adam with coupled L2.
DECOUPLED_WD = "trainforge_weight_decay"
LR_MULTIPLIER = "trainforge_lr_multiplier"


def lr_multipliers(model: nn.Module, by_id: dict[str, float] | None = None) -> dict[int, float]:
    """id(parameter) -> its learning-rate multiplier, where it is not 1: a graph layer's own
    ``lr_multiplier`` (set on its module by ``ml.graph_model``), overridden by ``by_id``
    (``spec.lr_multipliers``: plan.layers ids)."""
    from ml.warm_start import layer_aliases  # it builds on ml.models, as this module does

    out: dict[int, float] = {}
    for module in model.modules():
        mult = getattr(module, "trainforge_lr", None)
        if mult is not None:
            out |= {id(p): float(mult) for p in module.parameters()}
    if by_id:
        aliases, modules = layer_aliases(model), dict(model.named_modules())
        for name, mult in by_id.items():
            found = modules.get(aliases.get(name, name))
            if found is None:
                known = ", ".join(aliases) or ", ".join(n for n in modules if n)
                raise TrainError(f"lr_multipliers names layer {name!r}, which this model does "
                                 f"not have; its layers are {known}")  # fmt: skip
            out |= {id(p): float(mult) for p in found.parameters()}
    return {k: v for k, v in out.items() if v != 1.0}


def param_groups(
    model: nn.Module, weight_decay: float, multipliers: dict[int, float] | None = None
) -> list[dict[str, Any]]:
    # Frozen parameters (ml.warm_start) are left out: no state, no decay.
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not multipliers:  # the groups (and parameter order) of checkpoints saved before them
        if weight_decay == 0:  # one group: one fused/foreach call per step instead of two
            return [{"params": trainable, DECOUPLED_WD: 0.0}]
        kernels = [p for p in kernel_weights(model) if p.requires_grad]
        kernel_ids = {id(p) for p in kernels}
        others = [p for p in trainable if id(p) not in kernel_ids]
        out: list[dict[str, Any]] = [{"params": kernels, DECOUPLED_WD: weight_decay}]
        if others:
            out.append({"params": others, DECOUPLED_WD: 0.0})
        return out
    kernel_ids = {id(p) for p in kernel_weights(model)} if weight_decay else set()
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for p in trainable:  # kernels first, as before: (decay, 1.0) is the first group
        decay = weight_decay if id(p) in kernel_ids else 0.0
        groups.setdefault((decay, multipliers.get(id(p), 1.0)), []).append(p)
    ordered = sorted(groups, key=lambda k: (k[1] != 1.0, -k[0], k[1]))
    return [{"params": groups[k], DECOUPLED_WD: k[0], LR_MULTIPLIER: k[1]} for k in ordered]


def build_optimizer(spec: JobSpec, model: nn.Module, device: torch.device) -> Optimizer:
    opt = spec.optimizer
    multipliers = lr_multipliers(model, spec.lr_multipliers)
    groups = param_groups(model, spec.regularization.weight_decay, multipliers)
    impl: dict[str, bool] = (
        {"fused": True} if opt.kind in _FUSED.get(device.type, set()) else {"foreach": True}
    )
    if isinstance(opt, SGDOptimizer):
        return torch.optim.SGD(
            groups, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov, **impl
        )
    if isinstance(opt, AdamWOptimizer):
        for g in groups:  # AdamW decays natively: hand it the group's rate
            g["weight_decay"] = g[DECOUPLED_WD]
            g[DECOUPLED_WD] = 0.0
        return torch.optim.AdamW(
            groups, lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps, **impl
        )
    if isinstance(opt, AdamOptimizer):
        return torch.optim.Adam(
            groups, lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps, **impl
        )
    if isinstance(opt, RMSpropOptimizer):
        return torch.optim.RMSprop(
            groups,
            lr=opt.lr,
            alpha=opt.rho,
            eps=opt.eps,
            momentum=opt.momentum,
            centered=opt.centered,
            **impl,
        )
    if isinstance(opt, AdagradOptimizer):
        return torch.optim.Adagrad(
            groups,
            lr=opt.lr,
            initial_accumulator_value=opt.initial_accumulator_value,
            eps=opt.eps,
            **impl,
        )
    raise ValueError(f"unknown optimizer kind {opt.kind!r}")  # pragma: no cover


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """The schedule's lr, times each group's multiplier (1 but for ``lr_multiplier`` layers)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get(LR_MULTIPLIER, 1.0)


@torch.no_grad()
def apply_decoupled_weight_decay(optimizer: Optimizer, applies: torch.Tensor | None = None) -> None:
    """p -= lr · wd · p for groups that carry our decoupled rate (not AdamW's own).

    ``applies`` (a 0-d bool on the device): whether this step happens at all. fp16 steps
    that the grad scaler skips (inf/NaN gradients) must not decay the weights either;
    the choice stays on the device (no host sync), and a decaying step multiplies by the
    same float32 factor as without it."""
    for group in optimizer.param_groups:
        wd = group.get(DECOUPLED_WD, 0.0)
        if wd > 0:
            factor = 1.0 - group["lr"] * wd
            if applies is None:
                torch._foreach_mul_(group["params"], factor)
            else:
                kept = torch.where(applies, factor, 1.0).to(group["params"][0].dtype)
                torch._foreach_mul_(group["params"], kept)


def has_decoupled_weight_decay(optimizer: Optimizer) -> bool:
    return any(g.get(DECOUPLED_WD, 0.0) > 0 for g in optimizer.param_groups)

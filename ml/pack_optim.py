"""The optimizer step, weight decay, clipping and l1/l2 of a pack, each member with its own numbers.

Member ``m``'s numbers (lr, betas, eps, momentum, weight decay, clipping thresholds, l1, l2)
are rows of ``(M,)`` tensors broadcast over the stacked parameters, so every member follows
the rule ``ml.optim`` / ``ml.clipping`` / ``ml.models`` give its solo run:

- Adam/AdamW: PyTorch's own fused kernel (``torch._fused_adam_``) on each member's rows with
  its own scalars: the solo run's arithmetic exactly. Members whose numbers are equal this
  step (a grid's trials of one learning rate; ``Pack.regroup`` puts them side by side)
  share one call on their slice of the stacks: 8 calls instead of 64 for an 8 x 8 grid,
  where the calls' own cost was most of the step's optimizer time. Weight
  decay is decoupled (``p *= 1 - lr * wd`` on kernels before the step), as ``ml.optim``
  does for Adam (AdamW's in-kernel ``p -= lr * wd * p`` is the same up to rounding).
- SGD: ``buf = momentum * buf + g`` (a zero buffer makes the first step ``buf = g``, as
  torch's clone), Nesterov ``g + momentum * buf``, ``p += -lr * g``: batched.

The state converts to and from each member's own torch optimizer (``store`` / ``load``),
so checkpoints are the solo engine's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ml.pack_net import PackedNet
from ml.spec import (
    AdaptiveClipping,
    GlobalNormClipping,
    JobSpec,
    NormClipping,
    SGDOptimizer,
    ValueClipping,
)


def _col(values: Sequence[float], like: Tensor, ndim: int) -> Tensor:
    """(M,) numbers as a float32 column broadcasting over ``(M, *shape)`` of ``ndim`` dims."""
    t = torch.tensor(values, dtype=torch.float64).to(like.dtype).to(like.device)
    return t.view(-1, *([1] * (ndim - 1)))


class PackedOptimizer:
    def __init__(self, specs: Sequence[JobSpec], net: PackedNet, kernels: set[str]) -> None:
        self.net, self.kernels = net, kernels
        self.kind = specs[0].optimizer.kind
        self.reset(specs)

    def reset(self, specs: Sequence[JobSpec]) -> None:
        """(Re)build the per-member numbers and a zero state for the current members."""
        self.specs = list(specs)
        p = self.net.params
        self.names = list(p)
        self.wd = [s.regularization.weight_decay for s in specs]
        self.decays = any(w > 0 for w in self.wd)
        if self.kind == "sgd":
            opts = [s.optimizer for s in specs]
            assert all(isinstance(o, SGDOptimizer) for o in opts)
            self.momentum = {
                n: _col([o.momentum for o in opts], t, t.ndim)  # type: ignore[union-attr]
                for n, t in p.items()
            }
            self.nesterov = bool(getattr(opts[0], "nesterov", False))
            self.buf = {n: torch.zeros_like(t) for n, t in p.items()}
        else:
            self.exp_avg = {n: torch.zeros_like(t) for n, t in p.items()}
            self.exp_avg_sq = {n: torch.zeros_like(t) for n, t in p.items()}
            self.steps = torch.zeros(len(specs), dtype=torch.float32, device=self.net.device)
            # Each member's step count less the first one's: fixed until the next reload (the
            # counts move together), read from ``steps`` at the first step after it.
            self._offsets: list[float] | None = None
            self._runs: dict[tuple[float, ...], list[_Run]] = {}
            self._slices: dict[tuple[int, int], _Slices] = {}
        self._clip_setup(specs)

    def _clip_setup(self, specs: Sequence[JobSpec]) -> None:
        clip = specs[0].clipping
        self.clip_kind = None if clip is None else clip.kind
        like = next(iter(self.net.params.values()))

        def numbers(attr: str) -> Tensor:
            return _col([float(getattr(s.clipping, attr)) for s in specs], like, 1)

        if isinstance(clip, GlobalNormClipping | NormClipping):
            self.max_norm = numbers("max_norm")
        elif isinstance(clip, ValueClipping):
            self.clip_value = numbers("clip_value")
        elif isinstance(clip, AdaptiveClipping):
            self.clip_factor, self.clip_eps = numbers("clip_factor"), numbers("eps")

    # ------------------------------------------------------------------ one step

    @torch.no_grad()
    def clip(self, measure: bool) -> Tensor | None:
        """Clip every member's gradients by its own rule; each member's pre-clip global norm
        ``(M,)`` (None when neither clipping nor ``measure`` asks for it)."""
        if self.clip_kind is None and not measure:
            return None
        grads = [t.grad for t in self.net.params.values() if t.grad is not None]
        norms = [torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads]
        total: Tensor = torch.linalg.vector_norm(torch.stack(norms), dim=0)
        kind = self.clip_kind
        if kind == "global_norm":
            coef = torch.clamp(self.max_norm / (total + 1e-6), max=1.0)
            for g in grads:
                g.mul_(coef.view(-1, *([1] * (g.ndim - 1))))
        elif kind == "norm":
            for g, n in zip(grads, norms, strict=True):
                coef = self.max_norm / torch.maximum(n, self.max_norm)
                g.mul_(coef.view(-1, *([1] * (g.ndim - 1))))
        elif kind == "value":
            for g in grads:
                c = self.clip_value.view(-1, *([1] * (g.ndim - 1)))
                torch.maximum(g, -c, out=g)
                torch.minimum(g, c, out=g)
        elif kind == "adaptive":
            for name, p in self.net.params.items():
                if p.grad is not None:
                    unit = 1 if name in self.net.transposed else None
                    _adaptive(p.detach(), p.grad, self.clip_factor, self.clip_eps, unit)
        return total

    @torch.no_grad()
    def step(self, lrs: Sequence[float]) -> None:
        params = self.net.params
        if self.decays:
            factor = [1.0 - lr * wd for lr, wd in zip(lrs, self.wd, strict=True)]
            for name in self.kernels:
                p = params[name]
                p.mul_(_col(factor, p, p.ndim))
        if self.kind == "sgd":
            self._sgd(lrs)
            return
        self.steps.add_(1)
        if self._offsets is None:  # after a (re)load: resumed members bring their counts
            counts = self.steps.tolist()
            self._offsets = [c - counts[0] for c in counts]
        grads = [params[n].grad for n in self.names]
        has_grad = [g is not None for g in grads]
        for run in self._adam_runs(lrs):
            lo, hi = run.lo, run.hi
            rows = self._rows(lo, hi)  # views of the stacks: made once, not at every step
            if not all(has_grad):  # a parameter outside the graph: skipped, as torch does
                rows = rows.only(has_grad)
            torch._fused_adam_(
                rows.params, [g[lo:hi] for g in grads if g is not None], rows.exp_avg,
                rows.exp_avg_sq, [], rows.steps, lr=run.lr, beta1=run.beta1,
                beta2=run.beta2, weight_decay=0.0, eps=run.eps, amsgrad=False, maximize=False,
            )  # fmt: skip

    def _rows(self, lo: int, hi: int) -> _Slices:
        got = self._slices.get((lo, hi))
        if got is None:
            p, names = self.net.params, self.names
            got = _Slices(
                [p[n].detach()[lo:hi] for n in names],
                [self.exp_avg[n][lo:hi] for n in names],
                [self.exp_avg_sq[n][lo:hi] for n in names],
                [self.steps[lo]] * len(names),
            )
            self._slices[(lo, hi)] = got
        return got

    def _adam_runs(self, lrs: Sequence[float]) -> list[_Run]:
        """Consecutive members with the same numbers this step (lr, betas, eps, step count):
        one fused call each. Cached by the step's learning rates (a constant schedule asks
        once)."""
        offsets = self._offsets
        assert offsets is not None
        runs = self._runs.get(tuple(lrs))
        if runs is None:
            runs = []
            for i, spec in enumerate(self.specs):
                opt: Any = spec.optimizer
                run = _Run(i, i + 1, lrs[i], opt.beta1, opt.beta2, opt.eps, offsets[i])
                if runs and runs[-1].same(run):
                    runs[-1].hi = i + 1
                else:
                    runs.append(run)
            if len(self._runs) > 64:  # a schedule that changes the lr every step
                self._runs.clear()
            self._runs[tuple(lrs)] = runs
        return runs

    def _sgd(self, lrs: Sequence[float]) -> None:
        for name, p in self.net.params.items():
            g = p.grad
            if g is None:
                continue
            buf = self.buf[name]
            buf.mul_(self.momentum[name]).add_(g)
            d = g.add(buf * self.momentum[name]) if self.nesterov else buf
            p.detach().addcmul_(d, _col([-lr for lr in lrs], p, p.ndim))

    # ------------------------------------------------------------------ state <-> solo

    @torch.no_grad()
    def store(self, i: int, optimizer: Optimizer, model: torch.nn.Module) -> None:
        """Write member ``i``'s state into its own torch optimizer (bound to ``model``)."""
        by_name = self.net.params_of(model)
        for name in self.names:
            param = by_name[name]
            state = optimizer.state[param]
            if self.kind == "sgd":
                mom = float(self.momentum[name][i].flatten()[0])
                if mom != 0:
                    state["momentum_buffer"] = self.net.solo_layout(name, self.buf[name][i])
                continue
            if float(self.steps[i]) == 0:
                continue
            # Views: ml.checkpoint copies them once when it writes; a restack reads them back.
            state["step"] = self.steps[i].detach().clone().cpu()
            state["exp_avg"] = self.net.solo_layout(name, self.exp_avg[name][i])
            state["exp_avg_sq"] = self.net.solo_layout(name, self.exp_avg_sq[name][i])

    @torch.no_grad()
    def load(self, i: int, optimizer: Optimizer, model: torch.nn.Module) -> None:
        """Take member ``i``'s state from its own torch optimizer (a resumed checkpoint)."""
        by_name = self.net.params_of(model)
        for name in self.names:
            state = optimizer.state.get(by_name[name], {})
            if self.kind == "sgd":
                buf = state.get("momentum_buffer")
                if buf is None:
                    self.buf[name][i] = 0.0
                else:
                    self.net.solo_layout(name, self.buf[name][i]).copy_(buf)
                continue
            if "step" not in state:
                continue
            self.steps[i] = float(state["step"])
            self.net.solo_layout(name, self.exp_avg[name][i]).copy_(state["exp_avg"])
            self.net.solo_layout(name, self.exp_avg_sq[name][i]).copy_(state["exp_avg_sq"])


@dataclass
class _Slices:
    """Members ``lo .. hi - 1``'s rows of every stack, in ``PackedOptimizer.names`` order."""

    params: list[Tensor]
    exp_avg: list[Tensor]
    exp_avg_sq: list[Tensor]
    steps: list[Tensor]

    def only(self, keep: list[bool]) -> _Slices:
        def pick(ts: list[Tensor]) -> list[Tensor]:
            return [t for t, ok in zip(ts, keep, strict=True) if ok]

        return _Slices(pick(self.params), pick(self.exp_avg), pick(self.exp_avg_sq),
                       pick(self.steps))  # fmt: skip


@dataclass
class _Run:
    """Members ``lo .. hi - 1``: equal Adam numbers this step, one fused call."""

    lo: int
    hi: int
    lr: float
    beta1: float
    beta2: float
    eps: float
    offset: float  # the members' step count less the first member's

    def same(self, other: _Run) -> bool:
        mine = (self.lr, self.beta1, self.beta2, self.eps, self.offset)
        return mine == (other.lr, other.beta1, other.beta2, other.eps, other.offset)


def _unit_norm(x: Tensor, over: int | None = None) -> Tensor:
    """ml.clipping's unitwise norm for each member's slice of ``(M, *shape)``; ``over``: the
    one dimension to reduce (a dense kernel stacked transposed, ``(M, in, out)``)."""
    dims = tuple(range(1, x.ndim)) if x.ndim <= 2 else tuple(range(2, x.ndim))
    if over is not None:
        dims = (over,)
    norm: Tensor = torch.linalg.vector_norm(x, dim=dims, keepdim=True)
    return norm


def _adaptive(p: Tensor, g: Tensor, factor: Tensor, eps: Tensor, over: int | None) -> None:
    shape = (-1, *([1] * (p.ndim - 1)))
    max_norm = torch.maximum(_unit_norm(p, over), eps.view(shape)).mul_(factor.view(shape))
    g_norm = _unit_norm(g, over)
    scale = max_norm / g_norm.clamp(min=1e-6)
    g.copy_(torch.where(g_norm > max_norm, g * scale, g))


def kernel_coefficients(
    specs: Sequence[JobSpec], models: Sequence[torch.nn.Module], net: PackedNet
) -> dict[str, tuple[Tensor, Tensor]]:
    """Each kernel's (l1, l2) for every member, ``(M,)`` each (a layer's own l1/l2 or the
    spec's), as ``ml.models.kernel_groups`` gives them; empty when every member has none."""
    from ml.models import kernel_groups

    per_member: list[dict[str, tuple[float, float]]] = []
    for spec, model in zip(specs, models, strict=True):
        names = {id(p): n for n, p in net.params_of(model).items()}
        reg = spec.regularization
        per_member.append(
            {names[id(w)]: (l1, l2) for ws, l1, l2 in kernel_groups(model, reg.l1, reg.l2)
             for w in ws}
        )  # fmt: skip
    kernels = sorted(set().union(*per_member))
    rows = {k: [pm.get(k, (0.0, 0.0)) for pm in per_member] for k in kernels}
    like = next(iter(net.params.values()))
    out: dict[str, tuple[Tensor, Tensor]] = {}
    for name, pairs in rows.items():
        out[name] = (_col([a for a, _ in pairs], like, 1), _col([b for _, b in pairs], like, 1))
    return out


def penalty(net: PackedNet, coefs: dict[str, tuple[Tensor, Tensor]]) -> Tensor | None:
    """Each member's l1·Σ|w| + l2·Σw² over its kernels, ``(M,)``."""
    if not coefs:
        return None
    total: Tensor | None = None
    for name, (l1, l2) in coefs.items():
        w = net.params[name].flatten(1)
        term = l1 * w.abs().sum(1) + l2 * w.square().sum(1)
        total = term if total is None else total + term
    return total

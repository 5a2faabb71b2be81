"""M same-shaped models (a chain ``GraphNet`` each) as one batched program.

Every parameter and buffer is stacked over the members: ``params[name]`` is
``(M, *shape)``, a leaf that autograd fills with every member's gradient in one backward.
Activations travel in one of three layouts:

- ``shared``: no member dimension yet (the members read the same batch);
- ``vec``: ``(M, B, F)`` -- dense layers are batched matmuls (``baddbmm``);
- ``img``: ``(B, M*C, H, W)`` -- member m owns channels ``m*C .. m*C+C-1``, so a convolution
  is one grouped convolution (``groups = M * groups``), batch norm over ``M*C`` channels is
  each member's own, a layer norm on a map is ``group_norm`` with M groups, and pooling is
  unchanged. A first convolution over the shared input is one GEMM of its patches on CPU
  (``_conv_as_one_gemm``).

Each member's arithmetic is the solo model's up to float re-association (batched GEMMs
instead of one GEMM per member). Dropout draws each member's mask from that member's own
generator with the solo engine's call (``empty(shape).bernoulli_(1 - p)`` then ``/ (1 - p)``),
so on CPU a packed member's masks are the solo run's masks, bit for bit.

Members need not have the same modules: a member built without some dropout layers (a
shorthand with ``regularization.dropout: 0`` builds none) packs with members that have
them. The pack runs the longest member's layers (the *template*); each member's layers are
the template's with some dropout layers left out, and its parameters and buffers are known
by the template's names here (``template_names``). A missing dropout is rate 0 for that
member and draws nothing, as its solo run draws nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ml.graph_model import Conv2d, GraphNet, Linear, MapMax, MapMean, Pool2d, SeparableConv2d
from ml.shapes import same_padding

Layout = Literal["shared", "vec", "img"]
_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.LeakyReLU, nn.SiLU)


class Unpackable(Exception):
    """The models cannot run as one batched program (the pack falls back to solo runs)."""


@dataclass
class Act:
    x: Tensor
    layout: Layout


@dataclass
class _Ctx:
    train: bool
    gens: Sequence[torch.Generator]
    m: int


@dataclass
class _Op:
    run: Callable[[PackedNet, Act, _Ctx, _Op], Act]
    prefix: str
    module: nn.Module
    rates: list[float] = field(default_factory=list)  # dropout: each member's p


def _to_members(a: Act, m: int) -> Act:
    if a.layout != "shared":
        return a
    if a.x.ndim == 4:
        return Act(a.x.repeat(1, m, 1, 1), "img")
    return Act(a.x.unsqueeze(0).expand(m, *a.x.shape), "vec")


def _img_to_vec(x: Tensor, m: int) -> Tensor:
    return x.reshape(x.shape[0], m, -1).transpose(0, 1)


def _activation(module: nn.Module) -> Callable[[Tensor], Tensor] | None:
    name = getattr(module, "activation", None)
    if name is None:
        return None
    from ml.graph_model import ACT_FN

    return ACT_FN[name]


def _align(template: nn.Module, model: nn.Module) -> dict[str, str] | None:
    """``model``'s layer names -> the template's, when its layers are the template's with
    some dropout layers left out; None otherwise."""
    mine = list(model.named_children())
    out: dict[str, str] = {}
    j = 0
    for name, layer in template.named_children():
        if j < len(mine) and type(mine[j][1]) is type(layer):
            out[mine[j][0]] = name
            j += 1
        elif not isinstance(layer, nn.Dropout):
            return None
    return out if j == len(mine) else None


class PackedNet:
    def __init__(self, models: Sequence[nn.Module], device: torch.device) -> None:
        first = max(models, key=lambda model: len(list(model.children())))
        if not isinstance(first, GraphNet) or first.chain is None:
            raise Unpackable("the model is not a chain of layers")
        self.template = first
        shapes = {n: p.shape for n, p in first.named_parameters()}
        for model in models:
            if _align(first, model) is None:
                raise Unpackable("the members' models differ")
            mine = {n: p.shape for n, p in self.params_of(model).items()}
            if mine != shapes:
                raise Unpackable("the members' models differ")
        self.m = len(models)
        self.device = device
        self.ops = [self._op(name, mod, models) for name, mod in first.named_children()]
        # Dense kernels are stacked transposed, (M, in, out), contiguous: the batched matmul
        # reads them as they are, their gradient comes out of the backward in that layout (no
        # transposing copy per step), and each member's row stays contiguous for the fused
        # optimizer kernel. ``store``/``load`` and the optimizer's state transpose back.
        self.transposed = {
            f"{name}.weight" for name, mod in first.named_children() if isinstance(mod, nn.Linear)
        }
        self.params: dict[str, Tensor] = {}
        self.buffers: dict[str, Tensor] = {}
        self.load(models)

    # ------------------------------------------------------------------ state

    def template_names(self, model: nn.Module) -> dict[str, str]:
        """``model``'s layer names -> the template's (identity for the template's shape)."""
        names = _align(self.template, model)
        if names is None:
            raise Unpackable("the members' models differ")
        return names

    def params_of(self, model: nn.Module) -> dict[str, Tensor]:
        """``model``'s parameters by the template's names, in the template's order."""
        return self._renamed(model, model.named_parameters())

    def buffers_of(self, model: nn.Module) -> dict[str, Tensor]:
        return self._renamed(model, model.named_buffers())

    def _renamed(self, model: nn.Module, items: Iterable[tuple[str, Tensor]]) -> dict[str, Tensor]:
        layers = self.template_names(model)
        out: dict[str, Tensor] = {}
        for name, t in items:
            layer, _, rest = name.partition(".")
            out[f"{layers[layer]}.{rest}"] = t
        return out

    def load(self, models: Sequence[nn.Module]) -> None:
        """Stack the members' parameters and buffers (new leaves)."""
        self.m = len(models)
        per = [self.params_of(mod) for mod in models]
        self.params = {
            name: _stack([p[name].detach() for p in per], self.device, name in self.transposed)
            for name in per[0]
        }
        bufs = [self.buffers_of(mod) for mod in models]
        self.buffers = {
            name: torch.stack([b[name] for b in bufs]).to(self.device).contiguous()
            for name in bufs[0]
        }
        for op in self.ops:
            if op.rates:
                op.rates = [self._rate(mod, op.prefix) for mod in models]

    def _rate(self, model: nn.Module, prefix: str) -> float:
        """The dropout rate of the template's layer ``prefix`` in ``model`` (0: it has none)."""
        mine = {v: k for k, v in self.template_names(model).items()}.get(prefix)
        return 0.0 if mine is None else float(getattr(_child(model, mine), "p", 0.0))

    @torch.no_grad()
    def store(self, i: int, model: nn.Module) -> None:
        """Copy member ``i``'s tensors into its solo ``model`` (a checkpoint, a snapshot)."""
        for name, p in self.params_of(model).items():
            p.copy_(self.solo_layout(name, self.params[name][i]))
        for name, b in self.buffers_of(model).items():
            b.copy_(self.buffers[name][i])

    def solo_layout(self, name: str, row: Tensor) -> Tensor:
        """A member's row of ``name`` in its solo parameter's layout (a view)."""
        return row.T if name in self.transposed else row

    def kernel_names(self, model: nn.Module, kernels: Sequence[Tensor]) -> list[str]:
        ids = {id(k) for k in kernels}
        return [n for n, p in self.params_of(model).items() if id(p) in ids]

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor, per_member: bool, train: bool,
                gens: Sequence[torch.Generator]) -> Tensor:  # fmt: skip
        """Outputs ``(M, B, out)``. ``x``: ``(B, ...)`` shared, or ``(M, B, ...)`` per member."""
        if per_member:
            if x.ndim == 5:
                b = x.shape[1]
                a = Act(x.transpose(0, 1).reshape(b, -1, *x.shape[3:]), "img")
            else:
                a = Act(x, "vec")
        else:
            a = Act(x, "shared")
        ctx = _Ctx(train, gens, self.m)
        for op in self.ops:
            a = op.run(self, a, ctx, op)
        if a.layout == "img":
            raise Unpackable("the model ends on an image")
        return _to_members(a, self.m).x

    # ------------------------------------------------------------------ ops

    def _op(self, prefix: str, module: nn.Module, models: Sequence[nn.Module]) -> _Op:
        run = _RUNNERS.get(type(module))
        if run is None and isinstance(module, _ELEMENTWISE):
            run = _run_module
        if run is None:
            raise Unpackable(f"layer {prefix} ({type(module).__name__}) is not vectorised")
        op = _Op(run, prefix, module)
        if isinstance(module, nn.Dropout):
            op.rates = [self._rate(m, prefix) for m in models]
        return op

    def p(self, op: _Op, name: str) -> Tensor | None:
        return self.params.get(f"{op.prefix}.{name}")

    def b(self, op: _Op, name: str) -> Tensor:
        return self.buffers[f"{op.prefix}.{name}"]


def _stack(rows: list[Tensor], device: torch.device, transposed: bool) -> Tensor:
    stacked = torch.stack([r.T for r in rows] if transposed else rows)
    return stacked.contiguous().to(device).requires_grad_()


def _child(model: nn.Module, prefix: str) -> nn.Module:
    return dict(model.named_children())[prefix]


def _run_module(net: PackedNet, a: Act, ctx: _Ctx, op: _Op) -> Act:
    return Act(op.module(a.x), a.layout)


def _linear(net: PackedNet, a: Act, ctx: _Ctx, op: _Op) -> Act:
    w, bias = net.p(op, "weight"), net.p(op, "bias")
    assert w is not None
    if a.layout == "img":
        raise Unpackable("a dense layer on an image")
    if a.layout == "shared" and a.x.ndim != 2:
        raise Unpackable("a dense layer on a sequence")
    x = a.x.unsqueeze(0).expand(ctx.m, *a.x.shape) if a.layout == "shared" else a.x
    y = torch.bmm(x, w) if bias is None else torch.baddbmm(bias.unsqueeze(1), x, w)
    act = _activation(op.module)
    return Act(act(y) if act is not None else y, "vec")


def _conv(net: PackedNet, a: Act, ctx: _Ctx, op: _Op, conv: nn.Conv2d, prefix: str) -> Act:
    w, bias = net.params[f"{prefix}.weight"], net.params.get(f"{prefix}.bias")
    if a.layout == "vec":
        raise Unpackable("a convolution on a vector")
    if a.layout == "shared" and conv.groups != 1:
        a = _to_members(a, ctx.m)
    pad = getattr(conv, "pad", None)
    if a.layout == "shared" and conv.groups == 1 and _gemm_conv_pays(a.x, w):
        x = a.x if pad is None else F.pad(a.x, pad)
        y = _conv_as_one_gemm(x, w, bias, conv)
        act = _activation(conv)
        return Act(act(y) if act is not None else y, "img")
    # NHWC, as the solo engine runs convolutions (1.3-2x faster on CPU, grouped ones too).
    x = a.x.contiguous(memory_format=torch.channels_last)
    if pad is not None:
        x = F.pad(x, pad)
    groups = conv.groups if a.layout == "shared" else conv.groups * ctx.m
    weight = w.flatten(0, 1).contiguous(memory_format=torch.channels_last)
    y = F.conv2d(x, weight, None if bias is None else bias.flatten(),
                 conv.stride, conv.padding, conv.dilation, groups)  # fmt: skip
    # A one-channel input leaves the output's format ambiguous and the kernel picks NCHW:
    # NHWC from here on (batch norm, pooling and the next convolution: ~1.5x faster).
    y = y.contiguous(memory_format=torch.channels_last)
    act = _activation(conv)
    return Act(act(y) if act is not None else y, "img")


# The members' first convolution reads one shared input with few channels (a digit's one,
# an RGB image's three): a direct convolution kernel with 1-3 input channels runs far
# below the core's GEMM rate, and its weight gradient (64 members x 16 filters from one
# channel) most of all. As one GEMM of the input's patches, (B*H'*W', C*kh*kw), against
# every member's filters, (C*kh*kw, M*C_out), forward and both gradients are plain
# GEMMs. The digits CNN's pack of 16 on a 2-vCPU EPYC: the whole packed arm 1.04-1.28x
# faster (bench/packed_first_conv.py).
# The output is NHWC as it comes out of the GEMM, what the next layers want.
_GEMM_CONV_MAX_PATCH = 32  # C*kh*kw: up to an RGB 3x3 (27); patches cost that many x the input


def _gemm_conv_pays(x: Tensor, w: Tensor) -> bool:
    return x.device.type == "cpu" and w[0, 0].numel() <= _GEMM_CONV_MAX_PATCH


def _conv_as_one_gemm(x: Tensor, w: Tensor, bias: Tensor | None, conv: nn.Conv2d) -> Tensor:
    """``conv`` of every member on the shared ``x`` ``(B, C, H, W)``: ``(B, M*C_out, H', W')``
    in NHWC, from one GEMM of ``x``'s patches against the stacked kernels ``(M, C_out, C,
    kh, kw)``."""
    (kh, kw), dilation, stride = conv.kernel_size, conv.dilation, conv.stride
    if conv.padding == "same":  # stride 1: PyTorch's numbers are TensorFlow's, odd pixel after
        top, bottom = same_padding(x.shape[2], kh, 1, dilation[0])
        left, right = same_padding(x.shape[3], kw, 1, dilation[1])
        x = F.pad(x, (left, right, top, bottom))
        padding: tuple[int, ...] = (0, 0)
    else:
        padding = (0, 0) if conv.padding == "valid" else tuple(conv.padding)  # type: ignore[arg-type]
    b, _, h, wd = x.shape
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    patches = F.unfold(x, (kh, kw), dilation, padding, stride)  # (B, C*kh*kw, oh*ow)
    rows = patches.transpose(1, 2).reshape(b * oh * ow, -1)
    # (C*kh*kw, M*C_out) contiguous: as a transposed view, the GEMM's backward would compute
    # the kernels' gradient as (grad^T @ rows)^T, several times slower than rows^T @ grad.
    kernels = w.flatten(0, 1).flatten(1).T.contiguous()
    y = rows @ kernels if bias is None else torch.addmm(bias.flatten(), rows, kernels)
    return y.view(b, oh, ow, -1).permute(0, 3, 1, 2)


def _conv_op(net: PackedNet, a: Act, ctx: _Ctx, op: _Op) -> Act:
    assert isinstance(op.module, nn.Conv2d)
    return _conv(net, a, ctx, op, op.module, op.prefix)


def _separable(net: PackedNet, a: Act, ctx: _Ctx, op: _Op) -> Act:
    mod = op.module
    assert isinstance(mod, SeparableConv2d)
    a = _conv(net, a, ctx, op, mod.depthwise, f"{op.prefix}.depthwise")
    a = _conv(net, a, ctx, op, mod.pointwise, f"{op.prefix}.pointwise")
    act = _activation(mod)
    return Act(act(a.x), a.layout) if act is not None else a


def _flatten(net: PackedNet, a: Act, ctx: _Ctx, op: _Op) -> Act:
    if a.layout == "img":
        return Act(_img_to_vec(a.x, ctx.m), "vec")
    if a.layout == "shared":
        return Act(a.x.flatten(1), "shared")
    return Act(a.x.flatten(2), "vec")


def _map_pool(net: PackedNet, a: Act, ctx: _Ctx, op: _Op) -> Act:
    y = op.module(a.x)
    return Act(_img_to_vec(y, ctx.m), "vec") if a.layout == "img" else Act(y, a.layout)


def _dropout(net: PackedNet, a: Act, ctx: _Ctx, op: _Op) -> Act:
    if not ctx.train:
        return a
    a = _to_members(a, ctx.m)
    x = a.x
    shape = x.shape[1:] if a.layout == "vec" else (x.shape[0], x.shape[1] // ctx.m, *x.shape[2:])
    noise = [
        torch.empty(shape, device=x.device).bernoulli_(1 - p, generator=g).div_(1 - p)
        if p > 0
        else torch.ones(shape, device=x.device)  # no dropout layer in its solo run: no draw
        for p, g in zip(op.rates, ctx.gens, strict=True)
    ]
    mask = torch.stack(noise) if a.layout == "vec" else torch.cat(noise, dim=1)
    return Act(x * mask, a.layout)


def _batch_norm(net: PackedNet, a: Act, ctx: _Ctx, op: _Op) -> Act:
    mod = op.module
    assert isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d)
    a = _to_members(a, ctx.m)
    w, bias = net.p(op, "weight"), net.p(op, "bias")
    track = mod.track_running_stats
    mean = net.b(op, "running_mean").view(-1) if track else None
    var = net.b(op, "running_var").view(-1) if track else None
    if track and ctx.train:
        net.b(op, "num_batches_tracked").add_(1)
    x = a.x
    if a.layout == "vec":
        m, b, f = x.shape
        x = x.transpose(0, 1).reshape(b, m * f)
    y = F.batch_norm(x, mean, var, None if w is None else w.flatten(),
                     None if bias is None else bias.flatten(),
                     ctx.train or not track, mod.momentum or 0.0, mod.eps)  # fmt: skip
    if a.layout == "vec":
        y = y.view(b, m, f).transpose(0, 1)
    return Act(y, a.layout)


def _layer_norm(net: PackedNet, a: Act, ctx: _Ctx, op: _Op) -> Act:
    mod = op.module
    assert isinstance(mod, nn.LayerNorm)
    a = _to_members(a, ctx.m)
    if a.layout != "vec":
        raise Unpackable("layer norm on an image")
    w, bias = net.p(op, "weight"), net.p(op, "bias")
    y = F.layer_norm(a.x, mod.normalized_shape, None, None, mod.eps)
    if w is not None:
        y = y * w.unsqueeze(1)
    if bias is not None:
        y = y + bias.unsqueeze(1)
    return Act(y, "vec")


def _group_norm(net: PackedNet, a: Act, ctx: _Ctx, op: _Op) -> Act:
    mod = op.module
    assert isinstance(mod, nn.GroupNorm)
    a = _to_members(a, ctx.m)
    if a.layout != "img" or mod.num_groups != 1:
        raise Unpackable("group norm on a vector")
    w, bias = net.p(op, "weight"), net.p(op, "bias")
    y = F.group_norm(a.x, ctx.m, None if w is None else w.flatten(),
                     None if bias is None else bias.flatten(), mod.eps)  # fmt: skip
    return Act(y, "img")


_RUNNERS: dict[type, Callable[..., Act]] = {
    nn.Flatten: _flatten,
    nn.Identity: lambda net, a, ctx, op: a,
    nn.Linear: _linear,
    Linear: _linear,
    nn.Conv2d: _conv_op,
    Conv2d: _conv_op,
    SeparableConv2d: _separable,
    nn.MaxPool2d: _run_module,
    Pool2d: _run_module,
    MapMean: _map_pool,
    MapMax: _map_pool,
    nn.Dropout: _dropout,
    nn.BatchNorm1d: _batch_norm,
    nn.BatchNorm2d: _batch_norm,
    nn.LayerNorm: _layer_norm,
    nn.GroupNorm: _group_norm,
}

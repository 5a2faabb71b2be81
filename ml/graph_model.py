"""The torch model of a layer graph (``ml.graph_spec``), following ``ml.shapes`` layer by layer.

Layer ``i``'s module is registered under the name ``str(i)`` and the output head under
``str(len(layers))``, so a chain of layers has the parameter names of an
``nn.Sequential`` (the ``mlp`` and ``cnn`` shorthands keep their pre-graph names).
Tensors use PyTorch's layouts (images N×C×H×W) except sequences, which are N×L×D
(Keras' layout; batch_first). An ``embedding`` with ``mask_zero`` starts a padding
mask that sequence layers carry on; pooling over time, ``lstm``/``gru`` (which read the
last real token: our texts are padded at the end) and ``multi_head_attention`` (as a
key padding mask) honour it, as Keras' masking does.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ml.architecture import TrainError
from ml.checks import DatasetInfo
from ml.graph_spec import (
    ActivationLayer,
    AddLayer,
    AvgPool2DLayer,
    BatchNormLayer,
    ConcatLayer,
    Conv1DLayer,
    Conv2DLayer,
    DenseLayer,
    DepthwiseConv2DLayer,
    DropoutLayer,
    EmbeddingLayer,
    FlattenLayer,
    GlobalAvgPoolLayer,
    GlobalMaxPoolLayer,
    GraphModel,
    GRULayer,
    Layer,
    LayerNormLayer,
    LSTMLayer,
    MaxPool2DLayer,
    MultiHeadAttentionLayer,
    PositionEmbeddingLayer,
    SeparableConv2DLayer,
    TransformerEncoderLayer,
)
from ml.shapes import GraphShapes, Shape, infer, input_shape, pair, same_padding
from ml.tensor_manifest import layer_modules

ACT_FN: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "elu": F.elu,
    "leaky_relu": F.leaky_relu,
    "silu": F.silu,
}
Mode = Literal["plain", "add", "concat_image", "concat_last", "embed", "masked", "position"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,  # PyTorch's negative_slope 0.01 (Keras 3: 0.2)
    "silu": nn.SiLU,
}


class MapMean(nn.Module):
    """Mean over H and W: (N, C, H, W) -> (N, C).

    Not nn.AdaptiveAvgPool2d(1), whose CUDA backward has no deterministic
    implementation (it raises under ``deterministic: true``); a mean's does.
    """

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(-2, -1))


def _act(x: Tensor, name: str | None) -> Tensor:
    return x if name is None else ACT_FN[name](x)


class Linear(nn.Linear):
    def __init__(self, n_in: int, n_out: int, bias: bool, activation: str | None) -> None:
        super().__init__(n_in, n_out, bias=bias)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return _act(super().forward(x), self.activation)


class Conv2d(nn.Conv2d):
    """``same`` padding as TensorFlow: ``ceil(n / stride)`` outputs, the odd pixel after."""

    def __init__(self, c_in: int, c_out: int, layer: Conv2DLayer | DepthwiseConv2DLayer,
                 groups: int, bias: bool, hw: tuple[int, int]) -> None:  # fmt: skip
        k, s, d = pair(layer.kernel_size), pair(layer.strides), pair(layer.dilation_rate)
        self.pad: tuple[int, int, int, int] | None = None
        padding: str | int = 0
        if layer.padding == "same" and s == (1, 1):
            padding = "same"  # PyTorch's own: the same numbers, no copy
        elif layer.padding == "same":
            top, bottom = same_padding(hw[0], k[0], s[0], d[0])
            left, right = same_padding(hw[1], k[1], s[1], d[1])
            self.pad = (left, right, top, bottom)
        super().__init__(c_in, c_out, k, s, padding, d, groups=groups, bias=bias)
        self.activation = layer.activation

    def forward(self, x: Tensor) -> Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return _act(super().forward(x), self.activation)


class SeparableConv2d(nn.Module):
    """Depthwise (no bias, as Keras) then pointwise 1×1 (with ``use_bias``)."""

    def __init__(self, c: int, layer: SeparableConv2DLayer, hw: tuple[int, int]) -> None:
        super().__init__()
        mid = c * layer.depth_multiplier
        depth = DepthwiseConv2DLayer(kernel_size=layer.kernel_size, strides=layer.strides,
                                padding=layer.padding, dilation_rate=layer.dilation_rate,
                                depth_multiplier=layer.depth_multiplier)  # fmt: skip
        self.depthwise = Conv2d(c, mid, depth, groups=c, bias=False, hw=hw)
        self.pointwise = nn.Conv2d(mid, layer.filters, 1, bias=layer.use_bias)
        self.activation = layer.activation

    def forward(self, x: Tensor) -> Tensor:
        return _act(self.pointwise(self.depthwise(x)), self.activation)


class SeqConv1d(nn.Conv1d):
    """Conv1DLayer on N×L×C (Keras' layout); ``same`` as TensorFlow."""

    def __init__(self, c_in: int, layer: Conv1DLayer, length: int) -> None:
        super().__init__(c_in, layer.filters, layer.kernel_size, layer.strides,
                         dilation=layer.dilation_rate, bias=layer.use_bias)  # fmt: skip
        self.pad = (
            same_padding(length, layer.kernel_size, layer.strides, layer.dilation_rate)
            if layer.padding == "same"
            else (0, 0)
        )
        self.activation = layer.activation

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(F.pad(x.transpose(1, 2), self.pad))
        return _act(y, self.activation).transpose(1, 2)


class SeqBatchNorm(nn.BatchNorm1d):
    """Batch normalization of N×L×D over D (Keras axis -1)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class Pool2d(nn.Module):
    """Max or average pooling; ``same`` pads as TensorFlow (padding never counts in an
    average, and never wins a max)."""

    def __init__(self, layer: MaxPool2DLayer | AvgPool2DLayer, hw: tuple[int, int]) -> None:
        super().__init__()
        self.kernel = pair(layer.pool_size)
        self.stride = pair(layer.strides) if layer.strides is not None else self.kernel
        self.max = isinstance(layer, MaxPool2DLayer)
        self.pad: tuple[int, int, int, int] | None = None
        if layer.padding == "same":
            top, bottom = same_padding(hw[0], self.kernel[0], self.stride[0], 1)
            left, right = same_padding(hw[1], self.kernel[1], self.stride[1], 1)
            self.pad = (left, right, top, bottom)

    def forward(self, x: Tensor) -> Tensor:
        if self.max:
            if self.pad is not None:
                x = F.pad(x, self.pad, value=float("-inf"))
            return F.max_pool2d(x, self.kernel, self.stride)
        if self.pad is None:
            return F.avg_pool2d(x, self.kernel, self.stride)
        total = F.avg_pool2d(F.pad(x, self.pad), self.kernel, self.stride)
        ones = F.pad(torch.ones_like(x[:1, :1]), self.pad)
        return total / F.avg_pool2d(ones, self.kernel, self.stride)


class SeqPool(nn.Module):
    """Mean or max over time of N×L×D, padding excluded (an all-padding text gives 0)."""

    def __init__(self, mean: bool) -> None:
        super().__init__()
        self.mean = mean

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if mask is None:
            return x.mean(dim=1) if self.mean else x.amax(dim=1)
        m = mask.unsqueeze(-1)
        if self.mean:
            weights = m.to(x.dtype)
            return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        peak = x.masked_fill(~m, float("-inf")).amax(dim=1)
        return torch.where(mask.any(dim=1, keepdim=True), peak, torch.zeros_like(peak))


class MapMax(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.amax(dim=(-2, -1))


class Recurrent(nn.Module):
    """LSTM or GRU on N×L×D; without ``return_sequences`` the output at the last real token."""

    def __init__(self, layer: LSTMLayer | GRULayer, d: int) -> None:
        super().__init__()
        cls = nn.LSTM if isinstance(layer, LSTMLayer) else nn.GRU
        self.rnn = cls(d, layer.units, batch_first=True)
        self.sequences = layer.return_sequences

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        out: Tensor = self.rnn(x)[0]
        if self.sequences:
            return out
        if mask is None:
            return out[:, -1]
        last = (mask.sum(dim=1) - 1).clamp(min=0)
        return out.gather(1, last.view(-1, 1, 1).expand(-1, 1, out.shape[-1])).squeeze(1)


class SelfAttention(nn.Module):
    """Keras' MultiHeadAttentionLayer used as self-attention (query = key = value = the input),
    each head ``d / num_heads`` wide; no residual and no norm (add them as layers)."""

    def __init__(self, layer: MultiHeadAttentionLayer, d: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(d, layer.num_heads, dropout=layer.dropout,
                                               batch_first=True)  # fmt: skip

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        padding = key_padding(mask)
        out: Tensor = self.attention(x, x, x, key_padding_mask=padding, need_weights=False)[0]
        return out


def key_padding(mask: Tensor | None) -> Tensor | None:
    """The positions attention must not read (True), from a mask of the real tokens."""
    if mask is None:
        return None
    # A text of padding only would attend to nothing (NaN): let it see position 0.
    padding = ~mask
    padding[:, 0] = padding[:, 0] & mask.any(dim=1)
    return padding


class Encoder(nn.TransformerEncoder):
    """TransformerEncoderLayer: PyTorch's encoder of ``num_layers`` pre-LayerNorm blocks
    (batch_first; every block a copy of the first at the start), padding masked. Its
    parameters are named ``layers.<k>.self_attn.in_proj_weight``... as PyTorch's."""

    def __init__(self, layer: TransformerEncoderLayer, d: int) -> None:
        block = nn.TransformerEncoderLayer(
            d, layer.num_heads, dim_feedforward=layer.intermediate_dim or 4 * d,
            dropout=layer.dropout, activation=layer.activation, batch_first=True,
            norm_first=True,
        )  # fmt: skip
        super().__init__(block, layer.num_layers, enable_nested_tensor=False)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:  # type: ignore[override]
        out: Tensor = super().forward(x, src_key_padding_mask=key_padding(mask))
        return out


class Positions(nn.Embedding):
    """Learned positions added to N×L×D (keras_hub PositionEmbeddingLayer, summed)."""

    def forward(self, x: Tensor) -> Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        return x + super().forward(positions)[None]


def keep_in_inference_mode(module: nn.Module) -> None:
    """A frozen batch-normalization layer (``trainable: false``, ``warm_start.freeze``)
    normalizes with its running statistics and stops updating them, in training too
    (Keras' ``BatchNormalization`` with ``trainable = False``)."""

    def train(self: nn.Module, mode: bool = True) -> nn.Module:
        return nn.Module.train(self, False)

    module.train = types.MethodType(train, module)  # type: ignore[method-assign]
    module.eval()


def _module(layer: Layer, s: Shape, model: GraphModel) -> tuple[nn.Module, Mode]:
    if isinstance(layer, DenseLayer):
        if layer.activation is None:
            return nn.Linear(s.dims[-1], layer.units, bias=layer.use_bias), "plain"
        return Linear(s.dims[-1], layer.units, layer.use_bias, layer.activation), "plain"
    if isinstance(layer, DropoutLayer):
        return (nn.Dropout(layer.rate) if layer.rate > 0 else nn.Identity()), "plain"
    if isinstance(layer, ActivationLayer):
        return ACTIVATIONS[layer.fn](), "plain"
    if isinstance(layer, BatchNormLayer):
        bn = {"vector": nn.BatchNorm1d, "image": nn.BatchNorm2d, "sequence": SeqBatchNorm}
        return bn[s.kind](s.dims[0] if s.kind != "sequence" else s.dims[-1]), "plain"
    if isinstance(layer, LayerNormLayer):
        if s.kind == "image":
            return nn.GroupNorm(1, s.dims[0]), "plain"  # over (C, H, W), per-channel affine
        return nn.LayerNorm(s.dims[-1]), "plain"
    if isinstance(layer, FlattenLayer):
        return nn.Flatten(), "plain"
    if isinstance(layer, AddLayer):
        return nn.Identity(), "add"
    if isinstance(layer, ConcatLayer):
        return nn.Identity(), "concat_image" if s.kind == "image" else "concat_last"
    if isinstance(layer, Conv1DLayer):
        return SeqConv1d(s.dims[1], layer, s.dims[0]), "plain"
    if isinstance(layer, Conv2DLayer | DepthwiseConv2DLayer):
        c, hw = s.dims[0], (s.dims[1], s.dims[2])
        groups = 1 if isinstance(layer, Conv2DLayer) else c
        c_out = layer.filters if isinstance(layer, Conv2DLayer) else c * layer.depth_multiplier
        plain = layer.activation is None and (layer.padding == "valid" or layer.strides == 1)
        if plain:  # PyTorch's own module (`same` at stride 1 is PyTorch's `same`)
            k, st, d = pair(layer.kernel_size), pair(layer.strides), pair(layer.dilation_rate)
            pad = "same" if layer.padding == "same" else 0
            return nn.Conv2d(c, c_out, k, st, pad, d, groups=groups, bias=layer.use_bias), "plain"
        return Conv2d(c, c_out, layer, groups, layer.use_bias, hw), "plain"
    if isinstance(layer, SeparableConv2DLayer):
        return SeparableConv2d(s.dims[0], layer, (s.dims[1], s.dims[2])), "plain"
    if isinstance(layer, MaxPool2DLayer | AvgPool2DLayer):
        if isinstance(layer, MaxPool2DLayer) and layer.padding == "valid":
            k = pair(layer.pool_size)
            stride = pair(layer.strides) if layer.strides is not None else k
            return nn.MaxPool2d(k, stride), "plain"
        return Pool2d(layer, (s.dims[1], s.dims[2])), "plain"
    if isinstance(layer, GlobalAvgPoolLayer | GlobalMaxPoolLayer):
        mean = isinstance(layer, GlobalAvgPoolLayer)
        if s.kind == "image":
            return (MapMean() if mean else MapMax()), "plain"
        return SeqPool(mean), "masked"
    if isinstance(layer, EmbeddingLayer):
        vocab = layer.input_dim or model.vocab_size
        return nn.Embedding(vocab, layer.output_dim, padding_idx=0 if layer.mask_zero else None), (
            "embed"
        )
    if isinstance(layer, PositionEmbeddingLayer):
        return Positions(s.dims[0], s.dims[1]), "plain"
    if isinstance(layer, LSTMLayer | GRULayer):
        return Recurrent(layer, s.dims[1]), "masked"
    if isinstance(layer, MultiHeadAttentionLayer):
        return SelfAttention(layer, s.dims[1]), "masked"
    if isinstance(layer, TransformerEncoderLayer):
        return Encoder(layer, s.dims[1]), "masked"
    raise TrainError(f"unknown op {layer.op!r}")  # pragma: no cover - the union is closed


class GraphNet(nn.Module):
    def __init__(
        self, model: GraphModel, info: DatasetInfo, n_out: int, names: list[str] | None = None
    ) -> None:
        """``names``: the modules' names, the head's last (default: their indices)."""
        super().__init__()
        shapes: GraphShapes = infer(model, info, n_out)
        names = names or [str(i) for i in range(len(model.layers) + 1)]
        if shapes.problems:
            p = shapes.problems[0]
            raise TrainError(f"{'.'.join(map(str, p.loc))}: {p.msg}")
        self.sources = shapes.sources
        self.modes: list[Mode] = []
        self.masks_zero: list[bool] = []
        self.keeps_mask: list[bool] = []
        known: dict[int, Shape] = {-1: input_shape(info, model)}
        for i, (layer, out) in enumerate(zip(model.layers, shapes.layers, strict=False)):
            s = known[self.sources[i][0]]
            module, mode = _module(layer, s, model)
            if layer.init is not None or layer.l1 is not None or layer.l2 is not None:
                for m in module.modules():
                    m.trainforge_kernel = (layer.init, layer.l1, layer.l2)  # type: ignore[assignment]
            if not layer.trainable:
                module.requires_grad_(False)
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    keep_in_inference_mode(module)
            if layer.lr_multiplier != 1.0:  # ml.optim gives its parameters a group of their own
                module.trainforge_lr = layer.lr_multiplier  # type: ignore[assignment]
            self.add_module(names[i], module)
            self.modes.append(mode)
            self.masks_zero.append(isinstance(layer, EmbeddingLayer) and layer.mask_zero)
            kind = "vector" if len(out.output_shape) == 1 else "sequence"
            if len(out.output_shape) == 3:
                kind = "image"
            known[i] = Shape(kind, out.output_shape)  # type: ignore[arg-type]
            same_length = (
                kind == "sequence" and s.kind == "sequence" and (out.output_shape[0] == s.dims[0])
            )
            self.keeps_mask.append(same_length and not isinstance(layer, Conv1DLayer))
        self.n_layers = len(model.layers)
        last = shapes.layers[-2].output_shape[0]
        self.add_module(names[self.n_layers], nn.Linear(last, n_out))
        # plan.layers' ids -> module names: what warm_start.freeze / .reset name.
        self.layer_modules: dict[str, str] = layer_modules(model, names)
        # A chain of plain layers (every shorthand but text) runs as nn.Sequential does.
        chain = all(m == "plain" for m in self.modes) and all(
            src == [i - 1] for i, src in enumerate(self.sources)
        )
        self.chain: list[nn.Module] | None = list(self.children()) if chain else None

    def __getitem__(self, index: int) -> nn.Module:
        """Layer ``index``'s module (negative: from the end; the head is ``[-1]``)."""
        return list(self.children())[index]

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self.children())

    def __len__(self) -> int:
        return self.n_layers + 1

    def outputs(self, x: Tensor) -> dict[int, Tensor]:
        """Every layer's output by index (-1: the input); ``forward`` reads the last."""
        values: dict[int, Tensor] = {-1: x}
        masks: dict[int, Tensor | None] = {-1: None}
        modules = list(self.children())
        for i in range(self.n_layers):
            src = self.sources[i]
            module, mode = modules[i], self.modes[i]
            mask = next((masks[j] for j in src if masks[j] is not None), None)
            h = values[src[0]]
            if mode == "add":
                y = h
                for j in src[1:]:
                    y = y + values[j]
            elif mode == "concat_image":
                y = torch.cat([values[j] for j in src], dim=1)
            elif mode == "concat_last":
                y = torch.cat([values[j] for j in src], dim=-1)
            elif mode == "embed":
                ids = h.long()
                y = module(ids)
                mask = ids != 0 if self.masks_zero[i] else None
            elif mode == "masked":
                y = module(h, mask)
            else:
                y = module(h)
            values[i] = y
            masks[i] = mask if (self.keeps_mask[i] or mode == "embed") else None
        return values

    def forward(self, x: Tensor) -> Tensor:
        if self.chain is not None:
            for module in self.chain:
                x = module(x)
            return x
        head: Tensor = self[self.n_layers](self.outputs(x)[self.n_layers - 1])
        return head


def build_graph(
    model: GraphModel, info: DatasetInfo, n_out: int, names: list[str] | None = None
) -> GraphNet:
    return GraphNet(model, info, n_out, names)

"""Shape inference of a layer graph, torch-free: every layer's output shape and parameters.

The API runs :func:`infer` on every graph spec before anything is stored (each problem
a 422 at ``spec.model.layers.N``) and ``POST /v1/specs/validate`` answers its layers
as ``plan.layers``. ``ml.graph_model`` builds the torch modules from the same graph;
tests/ml/test_graph_shapes.py holds the two together op by op.

Shapes leave out the batch dimension and use four kinds:

- ``vector`` (F,): tabular rows, dense outputs, pooled maps;
- ``image`` (C, H, W): channels first, as PyTorch holds them;
- ``tokens`` (L,): text as token ids (only an ``embedding`` reads them);
- ``sequence`` (L, D): embeddings, recurrent and attention outputs (Keras' layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ml.dataset_info import DatasetInfo, SpecProblem
from ml.graph_spec import (
    KERNEL_OPS,
    MAX_LAYERS,
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

ShapeKind = Literal["vector", "image", "tokens", "sequence"]
INPUT = -1  # the index the model's input has in ``Resolved.sources``


@dataclass(frozen=True)
class Shape:
    kind: ShapeKind
    dims: tuple[int, ...]

    def text(self) -> str:
        return "×".join(str(d) for d in self.dims)


@dataclass(frozen=True)
class LayerShape:
    """One layer of the built model, as ``plan.layers`` lists it."""

    index: int
    id: str | None
    op: str
    output_shape: tuple[int, ...]
    parameter_count: int
    multiply_adds: int = 0  # forward pass, one sample (roughly)


@dataclass
class GraphShapes:
    layers: list[LayerShape] = field(default_factory=list)  # the head last; [] on problems
    sources: list[list[int]] = field(default_factory=list)  # per layer: input indices (-1 input)
    problems: list[SpecProblem] = field(default_factory=list)

    @property
    def parameter_count(self) -> int:
        return sum(layer.parameter_count for layer in self.layers)

    @property
    def activations(self) -> int:
        """Values every layer outputs for one sample (what backprop keeps)."""
        return sum(math.prod(layer.output_shape) for layer in self.layers)

    @property
    def multiply_adds(self) -> int:
        return sum(layer.multiply_adds for layer in self.layers)


def input_shape(info: DatasetInfo, model: GraphModel) -> Shape:
    if info.modality == "text":
        return Shape("tokens", (model.max_length,))
    if info.image_shape is not None:
        return Shape("image", info.image_shape)
    return Shape("vector", (info.n_features,))


def pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else v


def conv_length(n: int, k: int, s: int, d: int, padding: str) -> int:
    """Output length of a convolution (Keras and PyTorch agree; `same` as TensorFlow)."""
    if padding == "same":
        return -(-n // s)
    return (n - d * (k - 1) - 1) // s + 1


def same_padding(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's `same` padding (before, after): the odd pixel goes after."""
    total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


class _Problem(Exception):
    pass


def _resolve(model: GraphModel) -> tuple[list[list[int]], list[SpecProblem]]:
    """Each layer's input indices (-1: the model's input), and the reference problems."""
    ids: dict[str, int] = {}
    later = {layer.id: i for i, layer in enumerate(model.layers) if layer.id is not None}
    sources: list[list[int]] = []
    problems: list[SpecProblem] = []
    for i, layer in enumerate(model.layers):
        loc: tuple[str | int, ...] = ("model", "layers", i)
        refs = layer.inputs if layer.inputs is not None else [-1]
        src: list[int] = []
        for j, ref in enumerate(refs):
            at = (*loc, "inputs", j)
            if isinstance(ref, int):
                if i + ref < -1:
                    problems.append(
                        SpecProblem(
                            at,
                            f"offset {ref} reaches before the model's input (this is layer {i})",
                            "graph_bad_ref",
                        )
                    )
                    continue
                src.append(i + ref if i + ref >= 0 else INPUT)
            elif ref == "input":
                src.append(INPUT)
            elif ref in ids:
                src.append(ids[ref])
            elif ref in later and later[ref] >= i:
                what = "itself" if later[ref] == i else f"layer {later[ref]}, a later layer"
                problems.append(
                    SpecProblem(
                        at,
                        f"{ref!r} is {what}: a layer can only read earlier layers",
                        "graph_later_ref",
                    )
                )
            else:
                known = ", ".join(repr(k) for k in ids) or "none yet"
                problems.append(
                    SpecProblem(
                        at,
                        f"no earlier layer has id {ref!r} (ids so far: "
                        f"{known}; or use -1 or 'input')",
                        "graph_unknown_ref",
                    )
                )
        if layer.id is not None:
            if layer.id == "input":
                problems.append(
                    SpecProblem(
                        (*loc, "id"),
                        "'input' names the model's input: choose another id",
                        "graph_duplicate_id",
                    )
                )
            elif layer.id in ids:
                problems.append(
                    SpecProblem(
                        (*loc, "id"),
                        f"id {layer.id!r} is already layer {ids[layer.id]}'s: ids must be unique",
                        "graph_duplicate_id",
                    )
                )
            else:
                ids[layer.id] = i
        sources.append(src)
    return sources, problems


def infer(model: GraphModel, info: DatasetInfo, n_out: int) -> GraphShapes:
    """Every layer's output shape and parameter count, the implied head appended."""
    result = GraphShapes()
    layers = model.layers
    if len(layers) > MAX_LAYERS:
        result.problems.append(
            SpecProblem(
                ("model", "layers"),
                f"{len(layers)} layers: a graph has at most {MAX_LAYERS}",
                "graph_too_many_layers",
            )
        )
        return result
    sources, problems = _resolve(model)
    result.sources = sources
    result.problems += problems
    used = {s for src in sources for s in src}
    for i in range(len(layers) - 1):
        if i not in used:
            result.problems.append(
                SpecProblem(
                    ("model", "layers", i),
                    f"the output of layer {i} "
                    f"({layers[i].op}) is never read: remove it or "
                    "list it in a later layer's inputs",
                    "graph_unused_output",
                )
            )
    shapes: dict[int, Shape | None] = {INPUT: input_shape(info, model)}
    out: list[LayerShape] = []
    for i, layer in enumerate(layers):
        loc: tuple[str | int, ...] = ("model", "layers", i)
        if layer.op not in KERNEL_OPS:
            for name in ("init", "l1", "l2"):
                if getattr(layer, name) is not None:
                    result.problems.append(
                        SpecProblem(
                            (*loc, name),
                            f"{layer.op} has no kernel for {name} to apply to: remove it",
                            "graph_no_kernel",
                        )
                    )
        ins = [shapes.get(s) for s in sources[i]]
        if len(ins) != len(layer.inputs or [-1]) or any(s is None for s in ins):
            shapes[i] = None  # a reference or an earlier layer is wrong: said already
            continue
        try:
            shape, params, madds = _layer(layer, [s for s in ins if s is not None], model)
        except _Problem as e:
            result.problems.append(SpecProblem(loc, str(e), "graph_shape"))
            # An add of unlike shapes goes on with its first input's, so that the layers
            # after it are checked too; after any other problem their input is unknown.
            shapes[i] = ins[0] if isinstance(layer, AddLayer) and ins else None
            continue
        shapes[i] = shape
        out.append(LayerShape(i, layer.id, layer.op, shape.dims, params, madds))
    last = shapes.get(len(layers) - 1)
    if last is not None and last.kind != "vector":
        hint = {
            "image": "end with global_avg_pool, global_max_pool or flatten",
            "sequence": "end with global_avg_pool (mean over time), global_max_pool, "
            "or an lstm/gru without return_sequences",
            "tokens": "add an embedding and a pooling",
        }[last.kind]
        result.problems.append(
            SpecProblem(
                ("model", "layers", len(layers) - 1),
                f"the last layer's output is {last.text()} "
                f"({last.kind}); the output head needs it flat: "
                f"{hint}",
                "graph_output_not_flat",
            )
        )
    result.problems.sort(key=lambda p: tuple((isinstance(x, str), x) for x in p.loc))
    if result.problems or last is None:
        return result
    width = last.dims[0]
    out.append(
        LayerShape(len(layers), "head", "dense", (n_out,), width * n_out + n_out, width * n_out)
    )
    result.layers = out
    return result


def _one(layer: Layer, ins: list[Shape]) -> Shape:
    if len(ins) != 1:
        raise _Problem(f"{layer.op} reads one input and is given {len(ins)}")
    return ins[0]


def _channels(s: Shape) -> int:
    return {"vector": s.dims[0], "image": s.dims[0], "sequence": s.dims[-1]}.get(s.kind, 0)


def _need(layer: Layer, s: Shape, *kinds: ShapeKind) -> None:
    if s.kind in kinds:
        return
    what = {
        "vector": "a vector (tabular rows or a flat layer)",
        "image": "an image (C×H×W)",
        "sequence": "a sequence (length×features)",
        "tokens": "token ids",
    }
    got = {
        "vector": f"{s.dims[0]} features (tabular rows or a flat layer)",
        "image": f"an image {s.text()}",
        "sequence": f"a sequence {s.text()}",
        "tokens": f"{s.dims[0]} token ids",
    }[s.kind]
    hint = {"tokens": ": start with an embedding", "image": ": pool or flatten it first"}
    needs = " or ".join(what[k] for k in kinds)
    raise _Problem(f"{layer.op} needs {needs} and gets {got}{hint.get(s.kind, '')}")


def _layer(layer: Layer, ins: list[Shape], model: GraphModel) -> tuple[Shape, int, int]:
    """(output shape, parameters, multiply-adds) of one layer, or _Problem."""
    if isinstance(layer, AddLayer):
        if len(ins) < 2:
            raise _Problem("add needs at least 2 inputs: list them in `inputs`")
        if any(s != ins[0] for s in ins):
            raise _Problem(
                "add needs inputs of one shape and gets " + " and ".join(s.text() for s in ins)
            )
        return ins[0], 0, 0
    if isinstance(layer, ConcatLayer):
        if len(ins) < 2:
            raise _Problem("concat needs at least 2 inputs: list them in `inputs`")
        kinds = {s.kind for s in ins}
        rest = {s.dims[1:] if s.kind == "image" else s.dims[:-1] for s in ins}
        if len(kinds) > 1 or "tokens" in kinds or len(rest) > 1:
            raise _Problem(
                "concat joins features (channels) of inputs alike in every other "
                "dimension and gets " + " and ".join(s.text() for s in ins)
            )
        s0 = ins[0]
        total = sum(_channels(s) for s in ins)
        dims = (total, *s0.dims[1:]) if s0.kind == "image" else (*s0.dims[:-1], total)
        return Shape(s0.kind, dims), 0, 0
    s = _one(layer, ins)
    if isinstance(layer, DenseLayer):
        _need(layer, s, "vector", "sequence")
        n = s.dims[-1]
        steps = s.dims[0] if s.kind == "sequence" else 1
        dims = (*s.dims[:-1], layer.units)
        return (
            Shape(s.kind, dims),
            n * layer.units + layer.units * layer.use_bias,
            (steps * n * layer.units),
        )
    if isinstance(layer, DropoutLayer | ActivationLayer):
        return s, 0, 0
    if isinstance(layer, BatchNormLayer | LayerNormLayer):
        _need(layer, s, "vector", "image", "sequence")
        return s, 2 * _channels(s), 0
    if isinstance(layer, FlattenLayer):
        return Shape("vector", (math.prod(s.dims),)), 0, 0
    if isinstance(layer, Conv1DLayer):
        _need(layer, s, "sequence")
        length, c = s.dims
        k, st, d = layer.kernel_size, layer.strides, layer.dilation_rate
        n = conv_length(length, k, st, d, layer.padding)
        _check_side(layer, "length", length, n, k, d)
        params = c * layer.filters * k + layer.filters * layer.use_bias
        return Shape("sequence", (n, layer.filters)), params, n * c * layer.filters * k
    if isinstance(layer, Conv2DLayer | SeparableConv2DLayer | DepthwiseConv2DLayer):
        _need(layer, s, "image")
        c, h, w = s.dims
        (kh, kw), (sh, sw), (dh, dw) = (
            pair(layer.kernel_size),
            pair(layer.strides),
            pair(layer.dilation_rate),
        )
        oh = conv_length(h, kh, sh, dh, layer.padding)
        ow = conv_length(w, kw, sw, dw, layer.padding)
        _check_map(layer, (h, w), (oh, ow), f"kernel {kh}×{kw}")
        bias = layer.use_bias
        if isinstance(layer, Conv2DLayer):
            f = layer.filters
            return (
                Shape("image", (f, oh, ow)),
                c * f * kh * kw + f * bias,
                oh * ow * c * f * kh * kw,
            )
        mid = c * layer.depth_multiplier
        if isinstance(layer, DepthwiseConv2DLayer):
            return (
                Shape("image", (mid, oh, ow)),
                mid * kh * kw + mid * bias,
                oh * ow * mid * kh * kw,
            )
        f = layer.filters
        params = mid * kh * kw + mid * f + f * bias  # depthwise (no bias, as Keras) + pointwise
        return Shape("image", (f, oh, ow)), params, oh * ow * mid * (kh * kw + f)
    if isinstance(layer, MaxPool2DLayer | AvgPool2DLayer):
        _need(layer, s, "image")
        c, h, w = s.dims
        (kh, kw) = pair(layer.pool_size)
        (sh, sw) = pair(layer.strides) if layer.strides is not None else (kh, kw)
        oh, ow = conv_length(h, kh, sh, 1, layer.padding), conv_length(w, kw, sw, 1, layer.padding)
        _check_map(layer, (h, w), (oh, ow), f"pool_size {kh}×{kw}")
        return Shape("image", (c, oh, ow)), 0, 0
    if isinstance(layer, GlobalAvgPoolLayer | GlobalMaxPoolLayer):
        _need(layer, s, "image", "sequence")
        return Shape("vector", (_channels(s),)), 0, 0
    if isinstance(layer, EmbeddingLayer):
        _need(layer, s, "tokens")
        vocab = layer.input_dim or model.vocab_size
        if vocab < model.vocab_size:
            raise _Problem(
                f"input_dim {vocab} is below model.vocab_size {model.vocab_size}: "
                "token ids would fall outside the table"
            )
        return Shape("sequence", (s.dims[0], layer.output_dim)), vocab * layer.output_dim, 0
    if isinstance(layer, PositionEmbeddingLayer):
        _need(layer, s, "sequence")
        return s, math.prod(s.dims), 0
    if isinstance(layer, LSTMLayer | GRULayer):
        _need(layer, s, "sequence")
        length, d = s.dims
        gates, u = (4 if isinstance(layer, LSTMLayer) else 3), layer.units
        params = gates * (u * d + u * u + 2 * u)  # PyTorch keeps two biases per gate
        dims = (length, u) if layer.return_sequences else (u,)
        kind: ShapeKind = "sequence" if layer.return_sequences else "vector"
        return Shape(kind, dims), params, length * gates * u * (d + u)
    if isinstance(layer, MultiHeadAttentionLayer):
        _need(layer, s, "sequence")
        length, d = s.dims
        if d % layer.num_heads:
            raise _Problem(
                f"num_heads {layer.num_heads} must divide the feature size {d} "
                "(each head gets feature_size / num_heads)"
            )
        return s, 4 * d * d + 4 * d, length * 4 * d * d + 2 * length * length * d
    if isinstance(layer, TransformerEncoderLayer):
        _need(layer, s, "sequence")
        length, d = s.dims
        if d % layer.num_heads:
            raise _Problem(
                f"num_heads {layer.num_heads} must divide the feature size {d} "
                "(each head gets feature_size / num_heads)"
            )
        ff = layer.intermediate_dim or 4 * d
        # attention (q, k, v and output projections), the feed-forward block, two norms
        per_block = (4 * d * d + 4 * d) + (d * ff + ff + ff * d + d) + 2 * 2 * d
        madds = length * (4 * d * d + 2 * d * ff) + 2 * length * length * d
        return s, layer.num_layers * per_block, layer.num_layers * madds
    raise _Problem(f"unknown op {layer.op!r}")  # pragma: no cover - the union is closed


def _check_side(layer: Layer, what: str, n: int, out: int, k: int, d: int) -> None:
    if out < 1:
        raise _Problem(
            f"{layer.op} with kernel {k} (dilation {d}) and 'valid' padding would "
            f"shrink {what} {n} to {out}: use padding 'same' or a smaller kernel"
        )


def _check_map(layer: Layer, before: tuple[int, int], after: tuple[int, int], what: str) -> None:
    if min(after) < 1:
        shown = f"{max(after[0], 0)}×{max(after[1], 0)}"
        raise _Problem(
            f"{layer.op} with {what} and '{getattr(layer, 'padding', 'valid')}' "
            f"padding would shrink {before[0]}×{before[1]} to {shown}: use padding "
            "'same', a smaller kernel, or fewer poolings"
        )

"""Every tensor a spec's model holds, by ``state_dict`` name and shape, without building it.

Torch-free (the API imports it): ``POST /v1/specs/validate`` and ``POST /v1/jobs`` compare
what a warm-started job's model holds with its source checkpoint's tensors (read from
the safetensors header, :func:`safetensors_shapes`) through ``ml.warm_start_plan``, the
same function the engine loads with. ``ml.graph_model`` builds the modules these names
and shapes describe; tests/ml/test_graph_shapes.py holds the two together op by op and
tests/ml/test_tensor_manifest.py for every model kind.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from ml.architecture import output_units
from ml.dataset_info import DatasetInfo
from ml.graph_spec import (
    BatchNormLayer,
    Conv1DLayer,
    Conv2DLayer,
    DenseLayer,
    DepthwiseConv2DLayer,
    EmbeddingLayer,
    GraphModel,
    GRULayer,
    Layer,
    LayerNormLayer,
    LSTMLayer,
    MultiHeadAttentionLayer,
    PositionEmbeddingLayer,
    SeparableConv2DLayer,
    TransformerEncoderLayer,
)
from ml.shapes import INPUT, Shape, infer, input_shape, pair
from ml.shorthands import as_graph, text_as_graph, text_names
from ml.spec import JobSpec, TextModel

Dims = tuple[int, ...]


@dataclass(frozen=True)
class TensorEntry:
    shape: Dims
    parameter: bool  # False: a buffer (batch-norm statistics)


Manifest = dict[str, TensorEntry]


def layer_modules(model: GraphModel, names: list[str]) -> dict[str, str]:
    """``plan.layers`` ids (``layers.<i>``, a layer's own ``id``, ``head``) -> module names."""
    n = len(model.layers)
    out = {f"layers.{i}": names[i] for i in range(n)}
    out |= {layer.id: names[i] for i, layer in enumerate(model.layers) if layer.id}
    out["head"] = names[n]
    return out


def default_names(model: GraphModel) -> list[str]:
    return [str(i) for i in range(len(model.layers) + 1)]


def spec_graph(spec: JobSpec, info: DatasetInfo) -> tuple[GraphModel, list[str]] | None:
    """The graph ``ml.models.build_model`` builds for ``spec`` and its module names (None
    for a model that does not fit the data: the checks say so)."""
    model, dropout = spec.model, spec.regularization.dropout
    if isinstance(model, TextModel):
        return text_as_graph(model, dropout), text_names(model)
    try:
        graph = as_graph(model, info, dropout)
    except ValueError:  # a cnn or resnet without image data: the checks say so
        return None
    return (graph, default_names(graph)) if graph is not None else None


def spec_tensors(spec: JobSpec, info: DatasetInfo) -> Manifest | None:
    """Every tensor of the model ``spec`` builds on data like ``info`` (no embedding front:
    a table with embedded columns adds its tables in front, sized by the training split)."""
    found = spec_graph(spec, info)
    if found is None:
        return None
    graph, names = found
    return graph_tensors(graph, info, output_units(info), names)


def graph_tensors(
    model: GraphModel, info: DatasetInfo, n_out: int, names: list[str] | None = None
) -> Manifest | None:
    """The ``state_dict`` of ``ml.graph_model.build_graph(model, info, n_out, names)``:
    name -> shape and whether it is a parameter. None when the graph has problems."""
    shapes = infer(model, info, n_out)
    if shapes.problems:
        return None
    names = names or default_names(model)
    known: dict[int, Shape] = {INPUT: input_shape(info, model)}
    out: Manifest = {}
    for i, (layer, done) in enumerate(zip(model.layers, shapes.layers, strict=False)):
        s = known[shapes.sources[i][0]]
        for name, (dims, parameter) in _layer_tensors(layer, s, model).items():
            out[f"{names[i]}.{name}"] = TensorEntry(dims, parameter)
        dims = done.output_shape
        kind = {1: "vector", 3: "image"}.get(len(dims), "sequence")
        known[i] = Shape(kind, dims)  # type: ignore[arg-type]
    width = shapes.layers[-2].output_shape[0] if len(shapes.layers) > 1 else 0
    head = names[len(model.layers)]
    out[f"{head}.weight"] = TensorEntry((n_out, width), True)
    out[f"{head}.bias"] = TensorEntry((n_out,), True)
    return out


def _channels(s: Shape) -> int:
    return s.dims[-1] if s.kind == "sequence" else s.dims[0]


def _layer_tensors(layer: Layer, s: Shape, model: GraphModel) -> dict[str, tuple[Dims, bool]]:
    """One layer's own tensors (relative names), as its module in ``ml.graph_model`` has them."""
    p = True
    out: dict[str, tuple[Dims, bool]]
    if isinstance(layer, DenseLayer):
        out = {"weight": ((layer.units, s.dims[-1]), p)}
        return out | ({"bias": ((layer.units,), p)} if layer.use_bias else {})
    if isinstance(layer, BatchNormLayer):
        c = _channels(s)
        return {"weight": ((c,), p), "bias": ((c,), p), "running_mean": ((c,), False),
                "running_var": ((c,), False), "num_batches_tracked": ((), False)}  # fmt: skip
    if isinstance(layer, LayerNormLayer):
        c = _channels(s)
        return {"weight": ((c,), p), "bias": ((c,), p)}
    if isinstance(layer, Conv1DLayer):
        k = layer.kernel_size
        out = {"weight": ((layer.filters, s.dims[1], k), p)}
        return out | ({"bias": ((layer.filters,), p)} if layer.use_bias else {})
    if isinstance(layer, Conv2DLayer | DepthwiseConv2DLayer | SeparableConv2DLayer):
        c = s.dims[0]
        kh, kw = pair(layer.kernel_size)
        if isinstance(layer, Conv2DLayer):
            f = layer.filters
            out = {"weight": ((f, c, kh, kw), p)}
            return out | ({"bias": ((f,), p)} if layer.use_bias else {})
        mid = c * layer.depth_multiplier
        if isinstance(layer, DepthwiseConv2DLayer):
            out = {"weight": ((mid, 1, kh, kw), p)}
            return out | ({"bias": ((mid,), p)} if layer.use_bias else {})
        f = layer.filters
        out = {"depthwise.weight": ((mid, 1, kh, kw), p), "pointwise.weight": ((f, mid, 1, 1), p)}
        return out | ({"pointwise.bias": ((f,), p)} if layer.use_bias else {})
    if isinstance(layer, EmbeddingLayer):
        return {"weight": ((layer.input_dim or model.vocab_size, layer.output_dim), p)}
    if isinstance(layer, PositionEmbeddingLayer):
        return {"weight": (s.dims, p)}
    if isinstance(layer, LSTMLayer | GRULayer):
        g = (4 if isinstance(layer, LSTMLayer) else 3) * layer.units
        return {"rnn.weight_ih_l0": ((g, s.dims[1]), p), "rnn.weight_hh_l0": ((g, layer.units), p),
                "rnn.bias_ih_l0": ((g,), p), "rnn.bias_hh_l0": ((g,), p)}  # fmt: skip
    if isinstance(layer, MultiHeadAttentionLayer):
        return _attention("attention", s.dims[1])
    if isinstance(layer, TransformerEncoderLayer):
        d = s.dims[1]
        ff = layer.intermediate_dim or 4 * d
        out = {}
        for k in range(layer.num_layers):
            at = f"layers.{k}"
            out |= _attention(f"{at}.self_attn", d)
            out |= {f"{at}.linear1.weight": ((ff, d), p), f"{at}.linear1.bias": ((ff,), p)}
            out |= {f"{at}.linear2.weight": ((d, ff), p), f"{at}.linear2.bias": ((d,), p)}
            for norm in ("norm1", "norm2"):
                out |= {f"{at}.{norm}.weight": ((d,), p), f"{at}.{norm}.bias": ((d,), p)}
        return out
    return {}  # dropout, activation, flatten, add, concat, pooling: no tensors


def _attention(at: str, d: int) -> dict[str, tuple[Dims, bool]]:
    return {
        f"{at}.in_proj_weight": ((3 * d, d), True),
        f"{at}.in_proj_bias": ((3 * d,), True),
        f"{at}.out_proj.weight": ((d, d), True),
        f"{at}.out_proj.bias": ((d,), True),
    }


class HeaderError(ValueError):
    """Not a safetensors file (or its header is cut short)."""


def header_length(first_bytes: bytes) -> int:
    """The bytes a safetensors file's header takes, its 8-byte length prefix included."""
    if len(first_bytes) < 8:
        raise HeaderError("shorter than a safetensors header")
    (n,) = struct.unpack("<Q", first_bytes[:8])
    if n > 100 * 1024 * 1024:
        raise HeaderError(f"a safetensors header of {n} bytes")
    return 8 + int(n)


def safetensors_shapes(data: bytes) -> dict[str, Dims]:
    """Tensor name -> shape, from the start of a safetensors file (header only)."""
    end = header_length(data)
    if len(data) < end:
        raise HeaderError("the safetensors header is cut short")
    try:
        header = json.loads(data[8:end])
    except ValueError as exc:
        raise HeaderError(f"the safetensors header is not JSON: {exc}") from None
    return {
        name: tuple(int(d) for d in entry["shape"])
        for name, entry in header.items()
        if name != "__metadata__"
    }

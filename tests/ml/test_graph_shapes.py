"""ml.shapes (torch-free) against torch: every op's inferred output shape and parameter
count equal what the built module produces, over a grid of parameters (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml.architecture import TrainError
from ml.checks import DatasetInfo
from ml.graph_model import build_graph
from ml.graph_spec import GraphModel
from ml.shapes import infer
from ml.tensor_manifest import graph_tensors

N_OUT = 3
VOCAB = 50
side = st.integers(1, 12)
small = st.integers(1, 6)
kernel = st.integers(1, 5) | st.tuples(st.integers(1, 5), st.integers(1, 5))
stride = st.integers(1, 3) | st.tuples(st.integers(1, 3), st.integers(1, 3))
padding = st.sampled_from(["valid", "same"])
activation = st.sampled_from([None, "relu", "gelu", "tanh"])


def image_info(c: int, h: int, w: int) -> DatasetInfo:
    return DatasetInfo("classification", "image", 64, c * h * w, (c, h, w), N_OUT)


def tabular_info(f: int) -> DatasetInfo:
    return DatasetInfo("classification", "tabular", 64, f, None, N_OUT)


TEXT = DatasetInfo("classification", "text", 64, 0, None, N_OUT)


@st.composite
def images(draw: st.DrawFn) -> tuple[DatasetInfo, list[dict[str, Any]], dict[str, Any]]:
    return image_info(draw(st.integers(1, 3)), draw(side), draw(side)), [], {}


@st.composite
def vectors(draw: st.DrawFn) -> tuple[DatasetInfo, list[dict[str, Any]], dict[str, Any]]:
    return tabular_info(draw(st.integers(1, 9))), [], {}


@st.composite
def sequences(
    draw: st.DrawFn, dim: st.SearchStrategy[int] = small
) -> tuple[DatasetInfo, list[dict[str, Any]], dict[str, Any]]:
    embed = {"op": "embedding", "output_dim": draw(dim)}
    return TEXT, [embed], {"max_length": draw(st.integers(1, 9)), "vocab_size": VOCAB}


def _conv2d(draw: st.DrawFn, op: str) -> dict[str, Any]:
    layer = {"op": op, "kernel_size": draw(kernel), "strides": draw(stride),
             "padding": draw(padding), "dilation_rate": draw(st.integers(1, 2)),
             "use_bias": draw(st.booleans()), "activation": draw(activation)}  # fmt: skip
    if op != "depthwise_conv2d":
        layer["filters"] = draw(small)
    if op != "conv2d":
        layer["depth_multiplier"] = draw(st.integers(1, 2))
    return layer


def _pool(draw: st.DrawFn, op: str) -> dict[str, Any]:
    strides = draw(st.none() | stride)
    return {"op": op, "pool_size": draw(kernel), "strides": strides, "padding": draw(padding)}


@st.composite
def cases(draw: st.DrawFn, op: str) -> tuple[DatasetInfo, list[dict[str, Any]], dict[str, Any]]:
    """(data, layers, extra model fields) exercising ``op`` (the last layer may be a pool)."""
    if op in ("conv2d", "separable_conv2d", "depthwise_conv2d"):
        info, layers, extra = draw(images())
        return info, [*layers, _conv2d(draw, op)], extra
    if op in ("max_pool2d", "avg_pool2d"):
        info, layers, extra = draw(images())
        return info, [*layers, _pool(draw, op)], extra
    if op == "conv1d":
        info, layers, extra = draw(sequences())
        layer = {"op": "conv1d", "filters": draw(small), "kernel_size": draw(st.integers(1, 4)),
                 "strides": draw(st.integers(1, 3)), "padding": draw(padding),
                 "dilation_rate": draw(st.integers(1, 2)),
                 "activation": draw(activation)}  # fmt: skip
        return info, [*layers, layer], extra
    if op in ("lstm", "gru"):
        info, layers, extra = draw(sequences())
        layer = {"op": op, "units": draw(small), "return_sequences": draw(st.booleans())}
        return info, [*layers, layer], extra
    if op == "multi_head_attention":
        heads = draw(st.integers(1, 3))
        info, layers, extra = draw(sequences(st.integers(1, 3).map(lambda k: k * heads)))
        return info, [*layers, {"op": op, "num_heads": heads}], extra
    if op == "transformer_encoder":
        heads = draw(st.integers(1, 3))
        info, layers, extra = draw(sequences(st.integers(1, 3).map(lambda k: k * heads)))
        layer = {"op": op, "num_heads": heads, "num_layers": draw(st.integers(1, 3)),
                 "intermediate_dim": draw(st.none() | small),
                 "activation": draw(st.sampled_from(["relu", "gelu"]))}  # fmt: skip
        return info, [*layers, layer], extra
    if op in ("embedding", "position_embedding"):
        info, layers, extra = draw(sequences())
        return info, layers + ([{"op": op}] if op == "position_embedding" else []), extra
    if op == "dense":
        info, layers, extra = draw(vectors() | sequences())
        layer = {"op": "dense", "units": draw(small), "activation": draw(activation),
                 "use_bias": draw(st.booleans())}  # fmt: skip
        return info, [*layers, layer], extra
    simple = {"dropout": {"rate": 0.5}, "activation": {"fn": "elu"}}
    if op in ("dropout", "activation", "batch_norm", "layer_norm", "flatten"):
        info, layers, extra = draw(images() | vectors() | sequences())
        return info, [*layers, {"op": op, **simple.get(op, {})}], extra
    if op in ("global_avg_pool", "global_max_pool"):
        info, layers, extra = draw(images() | sequences())
        return info, [*layers, {"op": op}], extra
    # add / concat: the input (or the embedding) and a same-shaped layer beside it
    info, layers, extra = draw(images() | vectors() | sequences())
    first: str | int = "input" if not layers else -2
    if info.modality == "image":
        width = info.image_shape[0] if op == "add" else draw(small)  # type: ignore[index]
        branch = {"op": "conv2d", "filters": width, "kernel_size": 3, "padding": "same"}
    else:
        width = (info.n_features or layers[0]["output_dim"]) if op == "add" else draw(small)
        branch = {"op": "dense", "units": width}
    return info, [*layers, branch, {"op": op, "inputs": [first, -1]}], extra


OPS = ["dense", "dropout", "activation", "batch_norm", "layer_norm", "flatten", "add", "concat",
       "conv1d", "conv2d", "separable_conv2d", "depthwise_conv2d", "max_pool2d", "avg_pool2d",
       "global_avg_pool", "global_max_pool", "embedding", "position_embedding", "lstm", "gru",
       "multi_head_attention", "transformer_encoder"]  # fmt: skip


def flat_end(layers: list[dict[str, Any]], info: DatasetInfo) -> list[dict[str, Any]]:
    return [*layers, {"op": "flatten"}]


def sample(info: DatasetInfo, model: GraphModel, n: int = 4) -> torch.Tensor:
    if info.modality == "text":
        ids = torch.randint(0, VOCAB, (n, model.max_length))
        ids[0, 1:] = 0  # padding at the end, as the text pipeline writes it
        ids[1] = 0  # a text of padding only
        return ids.float()
    if info.image_shape is not None:
        return torch.randn(n, *info.image_shape)
    return torch.randn(n, info.n_features)


@pytest.mark.parametrize("op", OPS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_inferred_shapes_and_counts_match_torch(op, data):
    info, layers, extra = data.draw(cases(op))
    model = GraphModel.model_validate({"layers": flat_end(layers, info), **extra})
    shapes = infer(model, info, N_OUT)
    if shapes.problems:
        # Only a map shrunk to nothing may be refused (the builder refuses it the same way).
        assert all("shrink" in p.msg for p in shapes.problems), shapes.problems
        with pytest.raises(TrainError, match="shrink"):
            build_graph(model, info, N_OUT)
        return
    torch.manual_seed(0)
    net = build_graph(model, info, N_OUT).eval()
    with torch.no_grad():
        outs = net.outputs(sample(info, model))
        head = net(sample(info, model))
    for layer in shapes.layers[:-1]:
        assert tuple(outs[layer.index].shape[1:]) == layer.output_shape, layer
        own = sum(p.numel() for p in net[layer.index].parameters())
        assert own == layer.parameter_count, layer
    assert tuple(head.shape[1:]) == shapes.layers[-1].output_shape == (N_OUT,)
    assert shapes.parameter_count == sum(p.numel() for p in net.parameters())
    assert torch.isfinite(head).all()
    # ml.tensor_manifest (torch-free): every state_dict entry's name, shape and kind.
    params = {name for name, _ in net.named_parameters()}
    built = {k: (tuple(v.shape), k in params) for k, v in net.state_dict().items()}
    manifest = graph_tensors(model, info, N_OUT)
    assert manifest is not None
    assert {k: (e.shape, e.parameter) for k, e in manifest.items()} == built


def test_same_padding_is_tensorflows():
    """TensorFlow's rule (tf.nn.convolution docs): pad_total = max((ceil(n/s) - 1)·s +
    (k-1)·d + 1 - n, 0), pad_before = pad_total // 2, the rest after."""
    from ml.shapes import same_padding

    assert same_padding(8, 3, 2, 1) == (0, 1)  # out 4: (4-1)*2+3-8 = 1, all of it after
    assert same_padding(7, 3, 2, 1) == (1, 1)
    assert same_padding(5, 4, 1, 1) == (1, 2)  # an even kernel at stride 1: the odd one after
    assert same_padding(6, 3, 1, 2) == (2, 2)
    assert same_padding(9, 1, 3, 1) == (0, 0)


def test_same_pooling_never_counts_padding():
    info = image_info(2, 5, 5)
    x = torch.rand(3, 2, 5, 5) + 1.0
    for op, expected in (("avg_pool2d", torch.ones(3, 2, 3, 3)), ("max_pool2d", None)):
        layers = [{"op": op, "pool_size": 2, "padding": "same"}, {"op": "flatten"}]
        net = build_graph(GraphModel.model_validate({"layers": layers}), info, N_OUT)
        out = net.outputs(-x if op == "max_pool2d" else torch.ones_like(x))[0]
        if expected is not None:
            torch.testing.assert_close(out, expected)  # the edge windows average 1s only
        else:
            assert (out < 0).all()  # a -inf pad never wins; a zero pad would
            torch.testing.assert_close(out[..., -1, -1], -x[..., 4, 4])


def test_transformer_encoder_heads_must_divide_the_features():
    layers = [
        {"op": "embedding", "output_dim": 8},
        {"op": "transformer_encoder", "num_heads": 3, "num_layers": 2},
        {"op": "flatten"},
    ]
    model = GraphModel.model_validate({"layers": layers, "vocab_size": VOCAB, "max_length": 4})
    problems = infer(model, TEXT, N_OUT).problems
    assert [(p.loc, p.msg) for p in problems] == [
        (("model", "layers", 1), "num_heads 3 must divide the feature size 8 (each head gets "
         "feature_size / num_heads)")
    ]  # fmt: skip
    with pytest.raises(TrainError, match=r"model\.layers\.1: num_heads 3 must divide"):
        build_graph(model, TEXT, N_OUT)

"""The named model kinds as layer graphs (torch-free): every kind expands here.

``ml.graph_model`` builds every expanded graph, so a shorthand and the graph it
expands to are the same model: one module per layer, in order, with the same
parameter names as before the graph existed (``0.weight``, ``1.weight`` ...), so
old checkpoints load and a seed gives the same weights
(tests/ml/test_shorthand_graphs.py compares with the pre-graph builders). ``text`` builds
from its graph too, under its old module names (``text_names``).
"""

from __future__ import annotations

from typing import Any

from ml.dataset_info import DatasetInfo
from ml.graph_spec import GraphModel, ResNetModel, TransformerModel
from ml.spec import CNNModel, MLPModel, TextModel


def expand_mlp(model: MLPModel, dropout: float) -> GraphModel:
    layers: list[dict[str, Any]] = [{"op": "flatten"}]
    for units in model.hidden_units:
        layers.append({"op": "dense", "units": units})
        if model.normalization == "batch":
            layers.append({"op": "batch_norm"})
        elif model.normalization == "layer":
            layers.append({"op": "layer_norm"})
        layers.append({"op": "activation", "fn": model.activation})
        if dropout > 0:
            layers.append({"op": "dropout", "rate": dropout})
    return GraphModel.model_validate({"layers": layers})


def expand_cnn(model: CNNModel, info: DatasetInfo, dropout: float) -> GraphModel:
    """Conv blocks (conv, norm, activation, 2x2 max pooling while a side is >= 2), global
    average pooling, dropout. ``layer`` normalization on a map is over (C, H, W)."""
    if info.image_shape is None:
        raise ValueError("a cnn needs image data")
    _, h, w = info.image_shape
    k = model.kernel_size
    layers: list[dict[str, Any]] = []
    for ch in model.channels:
        if model.separable:
            layers.append({"op": "depthwise_conv2d", "kernel_size": k, "padding": "same",
                           "use_bias": False})  # fmt: skip
            layers.append({"op": "conv2d", "filters": ch, "kernel_size": 1})
        else:
            layers.append({"op": "conv2d", "filters": ch, "kernel_size": k, "padding": "same"})
        if model.normalization == "batch":
            layers.append({"op": "batch_norm"})
        elif model.normalization == "layer":
            layers.append({"op": "layer_norm"})
        layers.append({"op": "activation", "fn": model.activation})
        ph, pw = (2 if h >= 2 else 1), (2 if w >= 2 else 1)
        if ph * pw > 1:
            layers.append({"op": "max_pool2d", "pool_size": [ph, pw]})
            h, w = h // ph, w // pw
    layers.append({"op": "global_avg_pool"})
    if dropout > 0:
        layers.append({"op": "dropout", "rate": dropout})
    return GraphModel.model_validate({"layers": layers})


def expand_resnet(model: ResNetModel, info: DatasetInfo, dropout: float) -> GraphModel:
    """Stem (3×3 conv, batch norm, relu), then ``depth`` residual blocks -- conv, batch norm,
    relu, conv, batch norm, add the block's input, relu -- each followed by 2×2 max pooling
    while a side is >= 2; global average pooling, dropout."""
    if info.image_shape is None:
        raise ValueError("a resnet needs image data")
    _, h, w = info.image_shape
    conv = {"op": "conv2d", "filters": model.width, "kernel_size": 3, "padding": "same"}
    layers: list[dict[str, Any]] = [
        {**conv, "id": "stem"}, {"op": "batch_norm"}, {"op": "activation", "fn": "relu"},
    ]  # fmt: skip
    block_in = "stem_out"
    layers[-1]["id"] = block_in
    for b in range(model.depth):
        layers += [
            conv, {"op": "batch_norm"}, {"op": "activation", "fn": "relu"},
            conv, {"op": "batch_norm"},
            {"op": "add", "inputs": [block_in, -1]},
            {"op": "activation", "fn": "relu", "id": f"block{b}"},
        ]  # fmt: skip
        block_in = f"block{b}"
        ph, pw = (2 if h >= 2 else 1), (2 if w >= 2 else 1)
        if ph * pw > 1:
            block_in = f"pool{b}"
            layers.append({"op": "max_pool2d", "pool_size": [ph, pw], "id": block_in})
            h, w = h // ph, w // pw
    layers.append({"op": "global_avg_pool"})
    if dropout > 0:
        layers.append({"op": "dropout", "rate": dropout})
    return GraphModel.model_validate({"layers": layers})


def expand_transformer(model: TransformerModel, dropout: float) -> GraphModel:
    """Token embedding + learned positions, ``num_layers`` pre-LayerNorm encoder blocks
    (layer norm, self-attention, add; layer norm, dense 4·width gelu, dense width, add; dropout
    after attention and feed-forward when set), a final layer norm, mean over the real
    tokens, dropout."""
    d = model.width
    layers: list[dict[str, Any]] = [
        {"op": "embedding", "output_dim": d},
        {"op": "position_embedding", "id": "x0"},
    ]
    drop = [{"op": "dropout", "rate": dropout}] if dropout > 0 else []
    for i in range(model.num_layers):
        x = f"x{i}"
        layers += [
            {"op": "layer_norm"},
            {"op": "multi_head_attention", "num_heads": model.num_heads, "dropout": dropout},
            *drop,
            {"op": "add", "inputs": [x, -1], "id": f"a{i}"},
            {"op": "layer_norm"},
            {"op": "dense", "units": 4 * d, "activation": "gelu"},
            {"op": "dense", "units": d},
            *drop,
            {"op": "add", "inputs": [f"a{i}", -1], "id": f"x{i + 1}"},
        ]
    layers += [{"op": "layer_norm"}, {"op": "global_avg_pool"}, *drop]
    return GraphModel.model_validate(
        {"layers": layers, "vocab_size": model.vocab_size, "max_length": model.max_length}
    )


def text_as_graph(model: TextModel, dropout: float) -> GraphModel:
    """The graph the ``text`` model builds, built under its pre-graph module names
    (``text_names``) so that its checkpoints load. ``pooling``: embedding, mean over the real
    tokens, dropout (there at rate 0 too, as the old model's identity). ``transformer``:
    embedding + learned positions, one ``transformer_encoder`` op of ``num_layers``
    pre-LayerNorm blocks (4·d feed-forward, GELU, dropout = ``regularization.dropout``), a
    final layer norm, the masked mean, dropout."""
    d = model.embedding_dim
    layers: list[dict[str, Any]] = [{"op": "embedding", "output_dim": d}]
    if model.encoder == "transformer":
        layers += [
            {"op": "position_embedding"},
            {"op": "transformer_encoder", "num_layers": model.num_layers,
             "num_heads": model.num_heads, "dropout": dropout},
            {"op": "layer_norm"},
        ]  # fmt: skip
    layers += [{"op": "global_avg_pool"}, {"op": "dropout", "rate": dropout}]
    return GraphModel.model_validate(
        {"layers": layers, "vocab_size": model.vocab_size, "max_length": model.max_length}
    )


# The ``text`` model's module names before graphs existed (its checkpoints load): the
# parameters ``embedding.weight``, ``position.weight``, ``encoder.layers.<k>.*``,
# ``norm.*``, ``head.*``.
TEXT_POOLING_NAMES = ["embedding", "pool", "dropout", "head"]
TEXT_TRANSFORMER_NAMES = ["embedding", "position", "encoder", "norm", "pool", "dropout", "head"]


def text_names(model: TextModel) -> list[str]:
    """The module names ``text_as_graph(model)`` builds under, the head's last."""
    return TEXT_TRANSFORMER_NAMES if model.encoder == "transformer" else TEXT_POOLING_NAMES


def as_graph(model: object, info: DatasetInfo, dropout: float) -> GraphModel | None:
    """The graph a model kind builds; None for ``text``, which builds ``text_as_graph`` under
    its own module names (a ``text`` spec's ``warm_start`` may name those modules)."""
    if isinstance(model, GraphModel):
        return model
    if isinstance(model, MLPModel):
        return expand_mlp(model, dropout)
    if isinstance(model, CNNModel):
        return expand_cnn(model, info, dropout)
    if isinstance(model, ResNetModel):
        return expand_resnet(model, info, dropout)
    if isinstance(model, TransformerModel):
        return expand_transformer(model, dropout)
    return None

"""What a spec's model looks like, without building it (torch-free: the API imports this).

``parameter_count`` counts the layer graph a spec builds (``ml.shapes``); a test
checks that it equals ``sum(p.numel())`` of the built model for every model
kind and option. ``TrainError`` lives here (not in ``ml.engine``) so that every
engine module, and torch-free callers, can raise or catch it without import
cycles; ``ml.engine`` re-exports it.
"""

from __future__ import annotations

from ml.checks import DatasetInfo
from ml.graph_spec import GraphModel, ResNetModel, TransformerModel
from ml.shapes import GraphShapes, infer
from ml.shorthands import as_graph, text_as_graph
from ml.spec import CNNModel, JobSpec, MLPModel, TextModel
from ml.text import text_parameter_count


class TrainError(Exception):
    """A problem with the job that the user can act on (the message says how)."""


def is_classification(info: DatasetInfo) -> bool:
    return info.task == "classification"


def output_units(info: DatasetInfo) -> int:
    """Logits per class for classification (also for 2 classes), one unit for regression."""
    return info.n_classes if is_classification(info) else 1


def input_features(info: DatasetInfo) -> int:
    """Width of a flattened sample (an image is flattened to C·H·W for an MLP)."""
    if info.image_shape is not None:
        c, h, w = info.image_shape
        return c * h * w
    return info.n_features


def graph_shapes(spec: JobSpec, info: DatasetInfo) -> GraphShapes | None:
    """The layers of the model, shapes and counts (the head last). ``text`` is described by
    the graph it builds (``ml.shorthands.text_as_graph``)."""
    model = spec.model
    if isinstance(model, CNNModel | ResNetModel) and info.image_shape is None:
        raise TrainError(f"model.kind {model.kind!r} needs image data; use 'mlp' for tabular data")
    dropout = spec.regularization.dropout
    if isinstance(model, TextModel):
        return infer(text_as_graph(model, dropout), info, output_units(info))
    graph = as_graph(model, info, dropout)
    if graph is None:
        return None
    return infer(graph, info, output_units(info))


def parameter_count(spec: JobSpec, info: DatasetInfo) -> int:
    """Parameters of the model ``ml.models.build_model(spec, info)`` builds."""
    model = spec.model
    out = output_units(info)
    if isinstance(model, TextModel):
        return text_parameter_count(model, out)
    shapes = graph_shapes(spec, info)
    assert shapes is not None
    if shapes.problems:
        p = shapes.problems[0]
        raise TrainError(f"{'.'.join(map(str, p.loc))}: {p.msg}")
    return shapes.parameter_count


def multiply_adds_per_sample(spec: JobSpec, info: DatasetInfo) -> int:
    """Forward-pass multiply-adds of one sample, roughly: what a training step's CPU work
    scales with (the worker gives a small step one thread, see ``worker.torch_threads``)."""
    model, out = spec.model, output_units(info)
    if isinstance(model, GraphModel | ResNetModel | TransformerModel):
        shapes = graph_shapes(spec, info)
        return shapes.multiply_adds if shapes is not None else 0
    if isinstance(model, MLPModel):
        total, prev = 0, input_features(info)
        for units in model.hidden_units:
            total, prev = total + prev * units, units
        return total + prev * out
    if isinstance(model, CNNModel):
        if info.image_shape is None:
            return 0
        c, h, w = info.image_shape
        total, k2 = 0, model.kernel_size**2
        for ch in model.channels:
            per_pixel = c * k2 + c * ch if model.separable else c * k2 * ch
            total += h * w * per_pixel
            h, w = max(1, h // 2), max(1, w // 2)  # the pooling after each block
            c = ch
        return total + c * out
    if isinstance(model, TextModel):
        length, dim = model.max_length, model.embedding_dim
        if model.encoder == "pooling":
            return length * dim + dim * out
        # Per layer: q, k, v and output projections, the 4 x dim feed-forward block,
        # and the attention scores and weighted sums.
        per_layer = length * 12 * dim * dim + 2 * length * length * dim
        return model.num_layers * per_layer + dim * out
    return 0

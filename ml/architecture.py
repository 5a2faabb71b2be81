"""What a spec's model looks like, without building it (torch-free: the API imports this).

``parameter_count`` mirrors ``ml.models.build_model`` layer by layer; a test
checks that it equals ``sum(p.numel())`` of the built model for every model
kind and option. ``TrainError`` lives here (not in ``ml.engine``) so that every
engine module, and torch-free callers, can raise or catch it without import
cycles; ``ml.engine`` re-exports it.
"""

from __future__ import annotations

from ml.checks import DatasetInfo
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


def parameter_count(spec: JobSpec, info: DatasetInfo) -> int:
    """Trainable parameters of the model ``ml.models.build_model(spec, info)`` builds."""
    model = spec.model
    out = output_units(info)
    if isinstance(model, MLPModel):
        return _mlp(model, input_features(info), out)
    if isinstance(model, CNNModel):
        if info.image_shape is None:
            raise TrainError("model.kind 'cnn' needs image data; use 'mlp' for tabular data")
        return _cnn(model, info.image_shape[0], out)
    if isinstance(model, TextModel):
        return text_parameter_count(model, out)
    raise TrainError(f"model.kind {model.kind!r} is not available yet; use 'mlp' or 'cnn'")


def _mlp(model: MLPModel, n_in: int, n_out: int) -> int:
    total, prev = 0, n_in
    for units in model.hidden_units:
        total += prev * units + units  # Linear weight + bias
        if model.normalization != "none":
            total += 2 * units  # BatchNorm1d / LayerNorm affine weight + bias
        prev = units
    return total + prev * n_out + n_out


def _cnn(model: CNNModel, channels_in: int, n_out: int) -> int:
    total, c, k2 = 0, channels_in, model.kernel_size**2
    for ch in model.channels:
        if model.separable:
            total += c * k2  # depthwise, no bias (the pointwise conv carries it, as in Keras)
            total += c * ch + ch  # pointwise 1x1
        else:
            total += c * ch * k2 + ch
        if model.normalization != "none":
            total += 2 * ch  # BatchNorm2d / GroupNorm(1, C) affine
        c = ch
    return total + c * n_out + n_out  # global average pooling head -> Linear


def multiply_adds_per_sample(spec: JobSpec, info: DatasetInfo) -> int:
    """Forward-pass multiply-adds of one sample, roughly: what a training step's CPU work
    scales with (the worker gives a small step one thread, see ``worker.threads``)."""
    model, out = spec.model, output_units(info)
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

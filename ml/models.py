"""Models and losses built from the spec (closed registries: names map to torch classes).

Every model kind builds through ``ml.graph_model`` (the shapes and counts of
``ml.shapes``) from the layer graph ``ml.shorthands`` expands it to.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ml.architecture import TrainError, is_classification, output_units
from ml.checks import DatasetInfo
from ml.graph_spec import ResNetModel
from ml.spec import CNNModel, JobSpec, TextModel, loss_kind

# Layers whose weight is a "kernel" in the Keras sense: l1/l2 regularizers,
# decoupled weight decay and the chosen initializer apply to their weights only,
# never to biases, normalization parameters or embedding tables. The attention
# projections of nn.MultiheadAttention (bare Parameters, not Linears) are kernels
# too: see ``attention_projections``.
KERNEL_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def build_model(spec: JobSpec, info: DatasetInfo) -> nn.Module:
    """The job's model: the layer graph of its kind (``ml.shorthands``)."""
    from ml.graph_model import build_graph  # it builds on this module's pieces
    from ml.shorthands import as_graph, text_as_graph, text_names

    model = spec.model
    dropout = spec.regularization.dropout
    if isinstance(model, TextModel):
        if info.modality != "text":
            raise TrainError(
                f"model.kind 'text' needs text data and this dataset is {info.modality}"
            )
        d = model.embedding_dim
        if model.encoder == "transformer" and d % model.num_heads:
            raise TrainError(
                f"model.embedding_dim {d} must be a multiple of model.num_heads {model.num_heads}"
            )
        text = text_as_graph(model, dropout)
        return build_graph(text, info, output_units(info), text_names(model))
    if isinstance(model, CNNModel | ResNetModel) and info.image_shape is None:
        raise TrainError(f"model.kind {model.kind!r} needs image data; use 'mlp' for tabular data")
    graph = as_graph(model, info, dropout)
    if graph is None:  # pragma: no cover - the union is closed
        raise TrainError(f"model.kind {model.kind!r} is not available")
    return build_graph(graph, info, output_units(info))


def attention_projections(module: nn.MultiheadAttention) -> list[Tensor]:
    """The q, k and v projection kernels of one attention layer, each (d, d) as Keras
    holds them: views into ``in_proj_weight`` (or its separate q/k/v weights). Its output
    projection is an nn.Linear, a kernel already."""
    if module.in_proj_weight is not None:
        return list(module.in_proj_weight.chunk(3))
    return [module.q_proj_weight, module.k_proj_weight, module.v_proj_weight]


def module_kernels(m: nn.Module) -> list[Tensor]:
    """The kernels one module holds itself (not its children's): a Linear or Conv weight,
    the attention projection Parameters (whole, so that an optimizer can take them), an
    LSTM/GRU's input kernels (Keras' ``kernel``; the recurrent kernel is not regularized,
    as Keras' ``kernel_regularizer`` leaves it)."""
    if isinstance(m, KERNEL_LAYERS):
        return [m.weight]
    if isinstance(m, nn.MultiheadAttention):
        if m.in_proj_weight is not None:
            return [m.in_proj_weight]
        return [m.q_proj_weight, m.k_proj_weight, m.v_proj_weight]
    if isinstance(m, nn.RNNBase):
        return [getattr(m, f"weight_ih_l{k}") for k in range(m.num_layers)]
    return []


def kernel_weights(model: nn.Module) -> list[Tensor]:
    """Every kernel, whatever module holds it (see ``module_kernels``)."""
    return [w for m in model.modules() for w in module_kernels(m)]


def kernel_groups(
    model: nn.Module, l1: float, l2: float
) -> list[tuple[list[Tensor], float, float]]:
    """The kernels by (l1, l2): the spec's, or a graph layer's own ``l1``/``l2``."""
    groups: dict[tuple[float, float], list[Tensor]] = {}
    for m in model.modules():
        override = getattr(m, "trainforge_kernel", None)
        a = override[1] if override is not None and override[1] is not None else l1
        b = override[2] if override is not None and override[2] is not None else l2
        groups.setdefault((a, b), []).extend(module_kernels(m))
    return [(ws, a, b) for (a, b), ws in groups.items() if ws and (a > 0 or b > 0)]


def regularization_penalty(weights: list[Tensor], l1: float, l2: float) -> Tensor:
    """Keras kernel regularizers: l1·Σ|w| + l2·Σw² over the kernels (not biases/norms)."""
    terms: list[Tensor] = []
    if l1 > 0:
        terms.append(l1 * torch.stack([w.abs().sum() for w in weights]).sum())
    if l2 > 0:
        terms.append(l2 * torch.stack([w.square().sum() for w in weights]).sum())
    return torch.stack(terms).sum()


LossFn = Callable[[Tensor, Tensor], Tensor]


def build_loss(spec: JobSpec, info: DatasetInfo) -> LossFn:
    """The training loss: from the task unless ``spec.loss`` names one."""
    classification = is_classification(info)
    name = loss_kind(spec.loss)
    if name == "auto":
        name = "cross_entropy" if classification else "mse"
    if name == "cross_entropy":
        if not classification:
            raise TrainError("loss 'cross_entropy' needs a classification dataset; use 'mse'")
        smoothing = spec.regularization.label_smoothing

        def cross_entropy(out: Tensor, y: Tensor) -> Tensor:
            return F.cross_entropy(out, y, label_smoothing=smoothing)

        return cross_entropy
    if classification:
        raise TrainError(
            f"loss {name!r} needs a regression target; use 'cross_entropy' (or 'auto')"
        )
    regression: dict[str, LossFn] = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}
    return regression[name]

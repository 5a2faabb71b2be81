"""``model.kind: graph``: an architecture as data, one layer per list item (pydantic only).

Torch-free: ``ml.spec`` imports this module and the API validates with it. Each
layer is a discriminated union on ``op``; parameter names follow Keras (``units``,
``filters``, ``kernel_size``, ``strides``, ``padding``, ``pool_size``, ``rate``,
``return_sequences``, ``num_heads``...). A layer reads the previous layer's output
unless ``inputs`` names earlier layers: by ``id``, by a negative offset (``-1`` is
the previous layer, ``-2`` the one before) or ``input`` (the model's input). Only
earlier layers can be named, so a graph has no cycles. Shapes are checked by
``ml.shapes``; the torch modules are built by ``ml.graph_model``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator

from ml.spec_base import NoBoolNumbers, SuggestFields

Activation = Literal["relu", "tanh", "sigmoid", "gelu", "elu", "leaky_relu", "silu"]
InitName = Literal[
    "random_uniform",
    "lecun_normal",
    "xavier_normal",
    "xavier_uniform",
    "he_normal",
    "he_uniform",
    "orthogonal",
    "framework_default",
]
Padding = Literal["valid", "same"]
MAX_LAYERS = 256  # documented in docs/spec.md; a longer list is a 422

LayerRef = (
    Annotated[str, Field(min_length=1, max_length=64)] | Annotated[int, Field(ge=-256, le=-1)]
)
Size = Annotated[int, Field(ge=1, le=65536)]
Side = Annotated[int, Field(ge=1, le=64)]


class _Part(SuggestFields, NoBoolNumbers):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Layer(_Part):
    id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$",
        description="A name later layers can list in `inputs`.",
    )
    inputs: list[LayerRef] | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Earlier layers read: ids, negative offsets (-1 = the previous layer) or "
        "`input` (the model's input). Default: the previous layer.",
    )
    init: InitName | None = Field(
        None, description="This layer's kernel initializer (Keras kernel_initializer); "
        "default: the spec's `init`."
    )  # fmt: skip
    l1: float | None = Field(None, ge=0, le=1e6, description="Kernel l1 (default: the spec's).")
    l2: float | None = Field(None, ge=0, le=1e6, description="Kernel l2 (default: the spec's).")
    trainable: bool = Field(True, description="false: this layer's weights stay as initialized.")
    lr_multiplier: float = Field(
        1.0, gt=0, le=1000, allow_inf_nan=False,
        description="This layer's learning rate is the schedule's times this (discriminative "
        "fine-tuning: e.g. 0.1 for a pretrained body); spec.lr_multipliers overrides it.",
    )  # fmt: skip


class DenseLayer(_Layer):
    op: Literal["dense"] = "dense"
    units: Size
    activation: Activation | None = None
    use_bias: bool = True


class DropoutLayer(_Layer):
    op: Literal["dropout"] = "dropout"
    rate: float = Field(ge=0, lt=1, allow_inf_nan=False)


class ActivationLayer(_Layer):
    op: Literal["activation"] = "activation"
    fn: Activation


class BatchNormLayer(_Layer):
    op: Literal["batch_norm"] = "batch_norm"


class LayerNormLayer(_Layer):
    op: Literal["layer_norm"] = "layer_norm"


class FlattenLayer(_Layer):
    op: Literal["flatten"] = "flatten"


class AddLayer(_Layer):
    op: Literal["add"] = "add"


class ConcatLayer(_Layer):
    op: Literal["concat"] = "concat"


class _Conv(_Layer):
    kernel_size: Side | tuple[Side, Side] = 3
    strides: Side | tuple[Side, Side] = 1
    padding: Padding = "valid"
    dilation_rate: Side | tuple[Side, Side] = 1
    use_bias: bool = True


class Conv1DLayer(_Layer):
    op: Literal["conv1d"] = "conv1d"
    filters: Size
    kernel_size: Side = 3
    strides: Side = 1
    padding: Padding = "valid"
    dilation_rate: Side = 1
    activation: Activation | None = None
    use_bias: bool = True


class Conv2DLayer(_Conv):
    op: Literal["conv2d"] = "conv2d"
    filters: Size
    activation: Activation | None = None


class SeparableConv2DLayer(_Conv):
    op: Literal["separable_conv2d"] = "separable_conv2d"
    filters: Size
    depth_multiplier: Annotated[int, Field(ge=1, le=64)] = 1
    activation: Activation | None = None


class DepthwiseConv2DLayer(_Conv):
    op: Literal["depthwise_conv2d"] = "depthwise_conv2d"
    depth_multiplier: Annotated[int, Field(ge=1, le=64)] = 1
    activation: Activation | None = None


class _Pool2D(_Layer):
    pool_size: Side | tuple[Side, Side] = 2
    strides: Side | tuple[Side, Side] | None = Field(None, description="Default: pool_size.")
    padding: Padding = "valid"


class MaxPool2DLayer(_Pool2D):
    op: Literal["max_pool2d"] = "max_pool2d"


class AvgPool2DLayer(_Pool2D):
    op: Literal["avg_pool2d"] = "avg_pool2d"


class GlobalAvgPoolLayer(_Layer):
    op: Literal["global_avg_pool"] = "global_avg_pool"


class GlobalMaxPoolLayer(_Layer):
    op: Literal["global_max_pool"] = "global_max_pool"


class EmbeddingLayer(_Layer):
    op: Literal["embedding"] = "embedding"
    output_dim: Size
    input_dim: int | None = Field(
        None, ge=2, le=1_000_000, description="Vocabulary size; default: model.vocab_size."
    )
    mask_zero: bool = Field(
        True, description="Id 0 is padding: masked for pooling, recurrence and attention "
        "(Keras default false; our text pipeline always pads with 0)."
    )  # fmt: skip


class PositionEmbeddingLayer(_Layer):
    op: Literal["position_embedding"] = "position_embedding"


class LSTMLayer(_Layer):
    op: Literal["lstm"] = "lstm"
    units: Size
    return_sequences: bool = False


class GRULayer(_Layer):
    op: Literal["gru"] = "gru"
    units: Size
    return_sequences: bool = False


class MultiHeadAttentionLayer(_Layer):
    op: Literal["multi_head_attention"] = "multi_head_attention"
    num_heads: Annotated[int, Field(ge=1, le=64)]
    dropout: float = Field(0.0, ge=0, lt=1, allow_inf_nan=False)


class TransformerEncoderLayer(_Layer):
    """``num_layers`` pre-LayerNorm Transformer encoder blocks, each built alike (PyTorch's
    ``nn.TransformerEncoder``: the blocks start as copies of one): layer norm,
    self-attention, dropout, add; layer norm, dense ``intermediate_dim`` with the
    activation, dropout, dense back to the feature size, dropout, add."""

    op: Literal["transformer_encoder"] = "transformer_encoder"
    num_layers: int = Field(1, ge=1, le=24, description="Encoder blocks.")
    num_heads: Annotated[int, Field(ge=1, le=64)]
    intermediate_dim: Size | None = Field(
        None, description="Width of the feed-forward block; default: 4 × the feature size."
    )
    activation: Literal["relu", "gelu"] = "gelu"
    dropout: float = Field(
        0.0, ge=0, lt=1, allow_inf_nan=False,
        description="On the attention weights and after each sub-block (PyTorch's places).",
    )  # fmt: skip


Layer = Annotated[
    DenseLayer
    | DropoutLayer
    | ActivationLayer
    | BatchNormLayer
    | LayerNormLayer
    | FlattenLayer
    | AddLayer
    | ConcatLayer
    | Conv1DLayer
    | Conv2DLayer
    | SeparableConv2DLayer
    | DepthwiseConv2DLayer
    | MaxPool2DLayer
    | AvgPool2DLayer
    | GlobalAvgPoolLayer
    | GlobalMaxPoolLayer
    | EmbeddingLayer
    | PositionEmbeddingLayer
    | LSTMLayer
    | GRULayer
    | MultiHeadAttentionLayer
    | TransformerEncoderLayer,
    Field(discriminator="op"),
]

KERNEL_OPS = frozenset(
    {"dense", "conv1d", "conv2d", "separable_conv2d", "depthwise_conv2d", "lstm", "gru",
     "multi_head_attention", "transformer_encoder"}
)  # fmt: skip


class GraphModel(_Part):
    kind: Literal["graph"] = "graph"
    layers: list[Layer] = Field(
        min_length=1,
        description=f"The layers in order (at most {MAX_LAYERS}); the output head (one logit "
        "per class, one unit for regression) is appended after the last.",
    )
    vocab_size: int = Field(
        20000, ge=16, le=1_000_000, description="Text data: Keras TextVectorization max_tokens."
    )
    max_length: int = Field(
        128, ge=1, le=4096, description="Text data: tokens per text (output_sequence_length)."
    )

    @field_validator("layers")
    @classmethod
    def _not_too_many(cls, layers: list[Layer]) -> list[Layer]:
        # A longer list is reported by ml.shapes at spec.model.layers (with the limit);
        # this bound only keeps a hostile document from costing seconds to check.
        if len(layers) > 16 * MAX_LAYERS:
            raise ValueError(f"at most {MAX_LAYERS} layers")
        return layers


class ResNetModel(_Part):
    """A small residual CNN (ResNet-style), expanded to a graph by ``ml.shorthands``."""

    kind: Literal["resnet"] = "resnet"
    depth: int = Field(2, ge=1, le=32, description="Residual blocks (two 3×3 convolutions each).")
    width: int = Field(32, ge=1, le=1024, description="Filters of the stem and every block.")


class TransformerModel(_Part):
    """A Transformer text encoder, expanded to a graph by ``ml.shorthands``."""

    kind: Literal["transformer"] = "transformer"
    num_layers: int = Field(2, ge=1, le=24, description="Encoder blocks.")
    num_heads: int = Field(4, ge=1, le=64, description="Attention heads; they divide `width`.")
    width: int = Field(64, ge=1, le=4096, description="Embedding and model width.")
    vocab_size: int = Field(20000, ge=16, le=1_000_000)
    max_length: int = Field(128, ge=1, le=4096)

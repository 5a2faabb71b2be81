"""The job spec: one JSON document, every field defaulted and documented.

Pydantic only -- this module must never import torch: the API imports it to
validate specs before anything is queued. Every variant part is a
discriminated union on ``kind``. Names and defaults follow Keras and PyTorch;
where the two differ the field's description says which one we follow.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ml.column_spec import ColumnSpec
from ml.graph_spec import Activation, GraphModel, ResNetModel, TransformerModel
from ml.metric_names import METRIC_PATTERN
from ml.spec_base import NoBoolNumbers, OmitsUnusedSynthetic, StrictBools, SuggestFields

SPEC_VERSION = "1"

# Every number is bounded by what the engine can use (float32 arithmetic, int64
# counters): a value past a bound is a 422 naming the field, never a failed job.
BIG = 1e6  # the largest factor, norm or coefficient the engine takes
PositiveFloat = Annotated[float, Field(gt=0, le=BIG, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, le=BIG, allow_inf_nan=False)]
UnitInterval = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
LearningRate = Annotated[float, Field(gt=0, le=10, allow_inf_nan=False)]
Epsilon = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]  # epochs, steps, patience ...
ImageSide = Annotated[int, Field(le=16_384)]  # >= 1 is a semantic check (ml.checks)


class Strict(SuggestFields, NoBoolNumbers, StrictBools):
    """Base for every spec part: unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- dataset


class SyntheticOptions(Strict):
    n_samples: int = Field(1024, ge=8, le=10_000_000, description="Number of samples.")
    n_features: int = Field(20, ge=1, le=100_000, description="Features per sample (tabular).")
    n_classes: int = Field(
        2, ge=0, le=1000, description="Number of classes; 0 makes a regression target."
    )
    image_shape: tuple[ImageSide, ImageSide, ImageSide] | None = Field(
        None, description="(channels, height, width): generate images instead of tabular rows."
    )


BuiltinName = Literal["digits", "iris", "wine", "breast_cancer", "diabetes", "synthetic"]


class BuiltinSource(Strict, OmitsUnusedSynthetic):
    kind: Literal["builtin"] = "builtin"
    name: BuiltinName = Field(
        description="A dataset shipped with scikit-learn, or `synthetic` (seeded by `seed`)."
    )
    synthetic: SyntheticOptions = Field(
        default_factory=SyntheticOptions, description="Only read when name is `synthetic`."
    )


class UploadedSource(Strict):
    kind: Literal["uploaded"] = "uploaded"
    dataset_id: str = Field(min_length=1, max_length=64, description="Id from POST /v1/datasets.")


DatasetSource = Annotated[BuiltinSource | UploadedSource, Field(discriminator="kind")]

Normalization = Literal["none", "minmax", "minmax_symmetric", "standard"]


class TextCleaning(Strict):
    lowercase: bool = True
    strip_punctuation: bool = True
    collapse_whitespace: bool = True
    remove_stop_words: bool = Field(False, description="Remove English stop words.")


class Preprocessing(Strict):
    normalization: Normalization = Field(
        "standard",
        description=(
            "Per-feature scaling. minmax: [0, 1]; minmax_symmetric: [-1, 1]; standard: zero "
            "mean, unit variance. Statistics come from the training split only."
        ),
    )
    text_cleaning: TextCleaning = Field(default_factory=TextCleaning)


class DatasetSpec(Strict):
    source: DatasetSource
    validation_split: float = Field(
        0.2, ge=0, lt=1, description="Fraction held out for validation (stratified); 0 = none."
    )
    batch_size: int = Field(32, ge=1, le=65536, description="Keras default 32.")
    shuffle: bool = Field(True, description="Reshuffle the training split every epoch.")
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    columns: dict[str, ColumnSpec] = Field(
        default_factory=dict,
        max_length=10_000,
        description="Uploaded tables: per-column type, encoding and imputation "
        "(ml/column_spec.py, docs/datasets.md).",
    )


# --------------------------------------------------------------------------- augmentation


class AugmentationSpec(Strict):
    """Keras ImageDataGenerator meanings; image data only, training split only."""

    rotation_range: float = Field(0, ge=0, le=180, description="Degrees, uniform in ±range.")
    width_shift_range: float = Field(0, ge=0, lt=1, description="Fraction of width, ±range.")
    height_shift_range: float = Field(0, ge=0, lt=1, description="Fraction of height, ±range.")
    shear_range: float = Field(0, ge=0, le=89, description="Shear angle in degrees, ±range.")
    zoom_range: float | tuple[float, float] = Field(
        0, description="float z: zoom in [1-z, 1+z]; or [lower, upper] (upper at most 10)."
    )
    horizontal_flip: bool = False
    vertical_flip: bool = False
    fill_mode: Literal["nearest", "constant", "reflect"] = "nearest"
    cval: float = Field(0.0, ge=-BIG, le=BIG, description="Fill value when fill_mode is constant.")

    @field_validator("zoom_range")
    @classmethod
    def _zoom(cls, z: float | tuple[float, float]) -> float | tuple[float, float]:
        if isinstance(z, tuple):
            if not (0 < z[0] <= z[1] <= 10):
                raise ValueError("zoom_range [lower, upper] needs 0 < lower <= upper <= 10")
        elif not (0 <= z < 1):
            raise ValueError("zoom_range as a number must be in [0, 1)")
        return z


# --------------------------------------------------------------------------- model


class MLPModel(Strict):
    kind: Literal["mlp"] = "mlp"
    hidden_units: list[Annotated[int, Field(ge=1, le=65536)]] = Field(
        default_factory=lambda: [128, 64], max_length=64
    )
    activation: Activation = "relu"
    normalization: Literal["none", "batch", "layer"] = "none"


class CNNModel(Strict):
    kind: Literal["cnn"] = "cnn"
    channels: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [32, 64], min_length=1, max_length=32
    )
    kernel_size: int = Field(3, ge=1, le=15)
    separable: bool = Field(False, description="Depthwise + pointwise convolution.")
    normalization: Literal["none", "batch", "layer"] = "batch"
    activation: Activation = "relu"


class TextModel(Strict):
    kind: Literal["text"] = "text"
    embedding_dim: int = Field(64, ge=1, le=4096)
    encoder: Literal["pooling", "transformer"] = Field(
        "pooling", description="Mean pooling of embeddings, or a small encoder with LayerNorm."
    )
    num_layers: int = Field(1, ge=1, le=12)
    num_heads: int = Field(4, ge=1, le=64)
    max_length: int = Field(128, ge=1, le=4096)
    vocab_size: int = Field(20000, ge=16, le=1_000_000)


ModelSpec = Annotated[
    MLPModel | CNNModel | TextModel | GraphModel | ResNetModel | TransformerModel,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- init

BiasInit = Literal["zeros", "framework_default"]


class _InitBase(Strict):
    bias: BiasInit = "zeros"


class FrameworkDefaultInit(Strict):
    kind: Literal["framework_default"] = "framework_default"
    bias: BiasInit = "framework_default"


class RandomUniformInit(_InitBase):
    kind: Literal["random_uniform"] = "random_uniform"
    scale: float = Field(
        0.01, gt=0, le=100, description="Uniform in [0, scale), as in the seed article."
    )


class LecunNormalInit(_InitBase):
    kind: Literal["lecun_normal"] = "lecun_normal"


class XavierNormalInit(_InitBase):
    kind: Literal["xavier_normal"] = "xavier_normal"


class XavierUniformInit(_InitBase):
    kind: Literal["xavier_uniform"] = "xavier_uniform"


class HeNormalInit(_InitBase):
    kind: Literal["he_normal"] = "he_normal"


class HeUniformInit(_InitBase):
    kind: Literal["he_uniform"] = "he_uniform"


class OrthogonalInit(_InitBase):
    kind: Literal["orthogonal"] = "orthogonal"
    gain: float = Field(1.0, gt=0, le=100)


InitSpec = Annotated[
    FrameworkDefaultInit
    | RandomUniformInit
    | LecunNormalInit
    | XavierNormalInit
    | XavierUniformInit
    | HeNormalInit
    | HeUniformInit
    | OrthogonalInit,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- regularization


class RegularizationSpec(Strict):
    l1: NonNegFloat = Field(0.0, description="Keras kernel regularizer: l1·Σ|w| (weights only).")
    l2: NonNegFloat = Field(0.0, description="Keras kernel regularizer: l2·Σw² (weights only).")
    dropout: UnitInterval = Field(0.0, description="Rate after each hidden layer (training only).")
    weight_decay: NonNegFloat = Field(0.0, description="Decoupled weight decay (AdamW style).")
    label_smoothing: UnitInterval = 0.0


# --------------------------------------------------------------------------- optimizer


class SGDOptimizer(Strict):
    kind: Literal["sgd"] = "sgd"
    lr: LearningRate = 0.01
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = Field(False, description="Nesterov momentum: needs momentum > 0.")

    @field_validator("nesterov")
    @classmethod
    def _nesterov_needs_momentum(cls, nesterov: bool, info: ValidationInfo) -> bool:
        if nesterov and info.data.get("momentum") == 0:  # torch.optim.SGD refuses it
            raise ValueError("nesterov needs momentum > 0: set momentum (e.g. 0.9)")
        return nesterov


class AdamOptimizer(Strict):
    kind: Literal["adam"] = "adam"
    lr: LearningRate = 0.001
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    eps: Epsilon = Field(1e-7, description="Keras default 1e-7 (PyTorch uses 1e-8).")


class AdamWOptimizer(Strict):
    kind: Literal["adamw"] = "adamw"
    lr: LearningRate = 0.001
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    eps: Epsilon = 1e-7


class RMSpropOptimizer(Strict):
    kind: Literal["rmsprop"] = "rmsprop"
    lr: LearningRate = 0.001
    rho: float = Field(0.9, ge=0, lt=1, description="Keras rho 0.9 (PyTorch alpha 0.99).")
    momentum: float = Field(0.0, ge=0, lt=1)
    eps: Epsilon = 1e-7
    centered: bool = False


class AdagradOptimizer(Strict):
    kind: Literal["adagrad"] = "adagrad"
    lr: LearningRate = 0.001
    initial_accumulator_value: NonNegFloat = Field(0.1, description="Keras default 0.1.")
    eps: Epsilon = 1e-7


OptimizerSpec = Annotated[
    SGDOptimizer | AdamOptimizer | AdamWOptimizer | RMSpropOptimizer | AdagradOptimizer,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- schedule


class Warmup(Strict):
    """Linear warmup from start_factor·lr to the schedule's rate, counted in optimizer steps."""

    steps: int | None = Field(None, ge=1, le=10**12)
    epochs: int | None = Field(None, ge=1, le=100_000)
    start_factor: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _one_unit(self) -> Warmup:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("warmup needs exactly one of steps or epochs")
        return self


class _ScheduleBase(Strict):
    warmup: Warmup | None = None


class ConstantSchedule(_ScheduleBase):
    kind: Literal["constant"] = "constant"


class StepDecaySchedule(_ScheduleBase):
    """lr(epoch) = lr0 · decay_rate ** floor((1 + epoch) / decay_step), epoch from 0."""

    kind: Literal["step_decay"] = "step_decay"
    decay_rate: float = Field(0.5, gt=0, le=1)
    decay_step: int = Field(10, ge=1, le=100_000)


class MultiStepSchedule(_ScheduleBase):
    kind: Literal["multistep"] = "multistep"
    milestones: list[Annotated[int, Field(ge=1, le=100_000)]] = Field(
        default_factory=lambda: [30, 60], max_length=1000
    )
    gamma: float = Field(0.1, gt=0, le=1)


class ExponentialSchedule(_ScheduleBase):
    kind: Literal["exponential"] = "exponential"
    gamma: float = Field(0.95, gt=0, le=1, description="lr = lr0 · gamma ** epoch.")


class CosineSchedule(_ScheduleBase):
    kind: Literal["cosine"] = "cosine"
    t_max_epochs: int | None = Field(None, ge=1, le=100_000, description="Default: the whole run.")
    eta_min: NonNegFloat = 0.0


class CosineRestartsSchedule(_ScheduleBase):
    """SGDR (torch CosineAnnealingWarmRestarts), stepped with fractional epochs."""

    kind: Literal["cosine_restarts"] = "cosine_restarts"
    t_0: int = Field(10, ge=1, le=100_000, description="Epochs in the first cycle.")
    t_mult: int = Field(1, ge=1, le=100)
    eta_min: NonNegFloat = 0.0


class OneCycleSchedule(_ScheduleBase):
    """torch OneCycleLR over the run's total optimizer steps."""

    kind: Literal["one_cycle"] = "one_cycle"
    max_lr: LearningRate | None = Field(None, description="Default: the optimizer's lr.")
    pct_start: float = Field(0.3, gt=0, lt=1)
    anneal_strategy: Literal["cos", "linear"] = "cos"
    # >= 1: the cycle starts and ends at or below max_lr (a tiny divisor overflowed float32)
    div_factor: float = Field(25.0, ge=1, le=BIG, description="initial lr = max_lr / div_factor.")
    final_div_factor: float = Field(
        1e4, ge=1, le=BIG, description="final lr = initial lr / final_div_factor."
    )


MonitorMode = Literal["auto", "min", "max"]


class ReduceOnPlateauSchedule(_ScheduleBase):
    """Keras ReduceLROnPlateau semantics (checked once per epoch)."""

    kind: Literal["reduce_on_plateau"] = "reduce_on_plateau"
    monitor: str = "val_loss"
    mode: MonitorMode = "auto"
    factor: float = Field(0.1, gt=0, lt=1)
    patience: Count = 10
    min_delta: NonNegFloat = 1e-4
    cooldown: Count = 0
    min_lr: NonNegFloat = 0.0


ScheduleSpec = Annotated[
    ConstantSchedule
    | StepDecaySchedule
    | MultiStepSchedule
    | ExponentialSchedule
    | CosineSchedule
    | CosineRestartsSchedule
    | OneCycleSchedule
    | ReduceOnPlateauSchedule,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- clipping


class GlobalNormClipping(Strict):
    kind: Literal["global_norm"] = "global_norm"
    max_norm: PositiveFloat = 1.0


class NormClipping(Strict):
    kind: Literal["norm"] = "norm"
    max_norm: PositiveFloat = Field(1.0, description="Each parameter's gradient on its own.")


class ValueClipping(Strict):
    kind: Literal["value"] = "value"
    clip_value: PositiveFloat = 0.5


class AdaptiveClipping(Strict):
    kind: Literal["adaptive"] = "adaptive"
    clip_factor: PositiveFloat = 0.01
    eps: Epsilon = 1e-3


ClippingSpec = Annotated[
    GlobalNormClipping | NormClipping | ValueClipping | AdaptiveClipping,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- callbacks


class EarlyStoppingSpec(Strict):
    """Keras EarlyStopping semantics."""

    monitor: str = "val_loss"
    mode: MonitorMode = "auto"
    patience: Count = 0
    min_delta: NonNegFloat = 0.0
    baseline: Annotated[float, Field(ge=-1e30, le=1e30)] | None = None
    restore_best_weights: bool = False
    start_from_epoch: Count = 0


class CheckpointingSpec(Strict):
    every_n_epochs: int = Field(1, ge=1, le=100_000)
    keep_last: int = Field(2, ge=1, le=1000)
    keep_best: int = Field(1, ge=0, le=1000)
    monitor: str = "val_loss"
    mode: MonitorMode = "auto"


# --------------------------------------------------------------------------- loss

LossName = Literal["auto", "cross_entropy", "mse", "mae", "huber"]
ClassLabel = Annotated[str, Field(pattern=r"^(0|[1-9][0-9]{0,5})$")]


class LossSpec(Strict):
    """The object form of ``loss`` (the plain string form names ``kind`` alone)."""

    kind: LossName = Field(
        "auto", description="auto: cross-entropy for classification, MSE for regression."
    )
    class_weight: Literal["balanced"] | dict[ClassLabel, NonNegFloat] | None = Field(
        None,
        description=(
            "Classification only, Keras fit(class_weight=...) semantics: each training "
            "sample's loss is multiplied by its class's weight and the batch loss is the "
            "mean over the batch's samples (divided by the batch size, not by the sum of "
            "the weights). Keys are class indices ('0', '1', ...: the order of the "
            "dataset's classes); a class left out weighs 1. 'balanced': scikit-learn's "
            "n_samples / (n_classes * count) on the training split. Validation loss is "
            "unweighted."
        ),
    )


LayerName = Annotated[str, Field(min_length=1, max_length=200)]


class WarmStartSpec(Strict):
    """Start from another job's checkpoint (issue 24; see docs/spec.md#warm_start)."""

    job_id: str = Field(min_length=1, max_length=64, description="A job of the same team.")
    checkpoint: Literal["best", "latest"] | Annotated[int, Field(ge=1, le=2**63 - 1)] = Field(
        "best", description="best (by the source's checkpointing.monitor), latest, or an id."
    )
    freeze: list[LayerName] = Field(
        default_factory=list,
        max_length=1000,
        description="Layers trained no further (the built module's names, e.g. '1', until "
        "models are layer graphs with ids).",
    )
    reset: list[LayerName] = Field(
        default_factory=list, max_length=1000, description="Layers re-initialised, not loaded."
    )
    optimizer_state: bool = Field(
        False,
        description="true: continue the source's run (optimizer state, schedule position, "
        "epoch count; epochs is then the total from the source's start); false: the "
        "weights alone (fine-tuning).",
    )


def loss_kind(loss: LossName | LossSpec) -> LossName:
    """The loss's name, from either form of ``JobSpec.loss``."""
    return loss.kind if isinstance(loss, LossSpec) else loss


# --------------------------------------------------------------------------- run


class ResourcesSpec(Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    devices: int = Field(
        1,
        ge=1,
        le=64,
        description="Data-parallel processes on one worker host (N GPUs with device cuda, N "
        "CPU processes with device cpu). dataset.batch_size stays the global batch.",
    )
    sync_batch_norm: bool = Field(
        False,
        description="With devices > 1: batch-norm statistics over the global batch "
        "(SyncBatchNorm) instead of each replica's slice.",
    )


class LimitsSpec(Strict):
    max_runtime_seconds: int | None = Field(None, ge=1, le=30 * 24 * 3600)


class RetrySpec(Strict):
    max_restarts: int = Field(3, ge=0, le=100)


class JobSpec(Strict):
    """A complete training job. Only `dataset.source` is required."""

    dataset: DatasetSpec
    augmentation: AugmentationSpec | None = None
    model: ModelSpec = Field(default_factory=MLPModel)
    init: InitSpec = Field(default_factory=FrameworkDefaultInit)
    regularization: RegularizationSpec = Field(default_factory=RegularizationSpec)
    optimizer: OptimizerSpec = Field(default_factory=AdamOptimizer)
    schedule: ScheduleSpec = Field(default_factory=ConstantSchedule)
    clipping: ClippingSpec | None = None
    early_stopping: EarlyStoppingSpec | None = None
    checkpointing: CheckpointingSpec = Field(default_factory=CheckpointingSpec)
    loss: LossName | LossSpec = Field(
        "auto",
        description="A name (auto: cross-entropy for classification, MSE for regression), "
        "or an object {kind, class_weight}.",
    )
    warm_start: WarmStartSpec | None = None
    lr_multipliers: dict[LayerName, Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]] = (
        Field(
            default_factory=dict,
            max_length=1000,
            description="Per-layer learning-rate multipliers by plan.layers id (layers.<i>, a "
            "graph layer's id, head), for every model kind: the layer's parameters train at "
            "the schedule's lr times this (a graph layer's own lr_multiplier is overridden).",
        )
    )
    metrics: list[Annotated[str, Field(pattern=METRIC_PATTERN)]] = Field(
        default_factory=list,
        max_length=64,
        description="Extra per-epoch series beyond loss/accuracy, each computed over the "
        "whole split (train as `name`, validation as `val_name`): precision/recall/f1 "
        "_macro/_micro/_weighted, balanced_accuracy, auroc, top_<k>_accuracy; mae, rmse, r2.",
    )
    epochs: int = Field(10, ge=1, le=100_000)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    deterministic: bool = False
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    retry: RetrySpec = Field(default_factory=RetrySpec)

    @field_validator("metrics")
    @classmethod
    def _distinct_metrics(cls, names: list[str]) -> list[str]:
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"metrics names {', '.join(repeated)} more than once")
        return names

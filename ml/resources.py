"""What a job will cost before it runs (torch-free: the API refuses what cannot run).

:func:`estimate` gives the parameter count and an upper-bound estimate of a
training run's memory, in bytes, at fp32:

- parameters: weights and their gradients (2 x 4 bytes per parameter);
- optimizer state: Adam/AdamW 2 slots, RMSprop 1 (+1 with momentum, +1
  centered), Adagrad 1, SGD 1 with momentum (4 bytes per parameter and slot);
- copies: a checkpoint's state (weights + optimizer) while it is serialised,
  plus the best weights when ``early_stopping.restore_best_weights``;
- activations: every layer's output at ``dataset.batch_size``, kept for the
  backward pass and matched by its gradient (x 2);
- dataset: the samples as float32 (text: int64 token ids), twice (the loaded
  array and the training tensors built from it, normalized chunk by chunk into
  them: pinned host memory when they do not fit the GPU, see ``ml.data``).

:func:`check_resources` turns an estimate and the operator's limits into
:class:`~ml.checks.SpecProblem` s, each naming the spec field to change. The
API runs it on every submitted spec (a 422); the worker runs it again before
it allocates anything and fails the job with ``resources_exceeded``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ml.architecture import (
    TrainError,
    graph_shapes,
    input_features,
    output_units,
    parameter_count,
)
from ml.checks import DatasetInfo, SpecProblem
from ml.graph_spec import GraphModel, ResNetModel, TransformerModel
from ml.spec import (
    AdagradOptimizer,
    AdamOptimizer,
    AdamWOptimizer,
    BuiltinSource,
    CNNModel,
    JobSpec,
    MLPModel,
    RMSpropOptimizer,
    SGDOptimizer,
    TextModel,
)

FLOAT = 4  # bytes: fp32 is the upper bound (bf16/fp16 autocast keeps fp32 weights)
TOKEN = 8  # bytes: int64 token ids
DATASET_COPIES = 2


class ResourcesExceeded(TrainError):
    """The job would need more than the worker's limits (status_reason resources_exceeded)."""


@dataclass(frozen=True)
class ResourceLimits:
    max_parameters: int
    max_job_memory_bytes: int
    max_runtime_seconds: int | None = None  # the operator's ceiling on limits.max_runtime_seconds


@dataclass(frozen=True)
class ResourceEstimate:
    parameters: int
    parameter_bytes: int  # weights + gradients
    optimizer_bytes: int
    copy_bytes: int  # checkpoint serialisation, best weights
    activation_bytes: int
    dataset_bytes: int

    @property
    def memory_bytes(self) -> int:
        return (
            self.parameter_bytes
            + self.optimizer_bytes
            + self.copy_bytes
            + self.activation_bytes
            + self.dataset_bytes
        )


def _optimizer_slots(spec: JobSpec) -> int:
    opt = spec.optimizer
    if isinstance(opt, AdamOptimizer | AdamWOptimizer):
        return 2
    if isinstance(opt, RMSpropOptimizer):
        return 1 + (opt.momentum > 0) + opt.centered
    if isinstance(opt, AdagradOptimizer):
        return 1
    if isinstance(opt, SGDOptimizer):
        return 1 if opt.momentum > 0 else 0
    return 2


def _activations_per_sample(spec: JobSpec, info: DatasetInfo) -> int:
    """Floats one sample keeps for the backward pass (layer outputs), an upper bound."""
    model, dropout = spec.model, spec.regularization.dropout > 0
    if isinstance(model, GraphModel | ResNetModel | TransformerModel):
        # Every layer's output, the input and the head (ml.shapes); x2 covers what a layer
        # keeps besides its output (a norm's statistics, an activation's mask, an RNN's gates).
        shapes = graph_shapes(spec, info)
        assert shapes is not None
        return input_features(info) + 2 * shapes.activations
    if isinstance(model, MLPModel):
        per_layer = 2 + (model.normalization != "none") + dropout
        return input_features(info) + per_layer * sum(model.hidden_units) + output_units(info)
    if isinstance(model, CNNModel):
        if info.image_shape is None:
            return 0
        c, h, w = info.image_shape
        total = c * h * w
        for ch in model.channels:
            if model.separable:
                total += c * h * w  # the depthwise output
            total += ch * h * w * (2 + (model.normalization != "none"))
            ph, pw = (2 if h >= 2 else 1), (2 if w >= 2 else 1)
            h, w = h // ph, w // pw
            total += ch * h * w  # the pooled map
            c = ch
        return total + c + output_units(info)
    if isinstance(model, TextModel):
        length, dim = model.max_length, model.embedding_dim
        if model.encoder == "pooling":
            return 2 * length * dim + dim + output_units(info)
        # Per layer: attention (q, k, v, output; scores and softmax per head), the
        # feed-forward block (4 x dim wide) and two LayerNorms with their residuals.
        per_layer = 12 * length * dim + 2 * model.num_heads * length * length
        return length * dim * 2 + model.num_layers * per_layer + dim + output_units(info)
    return 0


def _dataset_bytes(spec: JobSpec, info: DatasetInfo) -> int:
    if info.modality == "text":
        model = spec.model
        length = (
            model.max_length
            if isinstance(model, TextModel | GraphModel | TransformerModel)
            else 128
        )
        per_sample = length * TOKEN
    else:
        per_sample = input_features(info) * FLOAT
    return DATASET_COPIES * info.n_samples * (per_sample + 8)  # + the label


def estimate(spec: JobSpec, info: DatasetInfo) -> ResourceEstimate:
    """Parameters and memory of training ``spec`` on ``info`` (raises TrainError when the
    model does not fit the data: ``ml.checks.check_spec`` reports that first)."""
    params = parameter_count(spec, info)
    weights = params * FLOAT
    optimizer = _optimizer_slots(spec) * weights
    best = weights if spec.early_stopping and spec.early_stopping.restore_best_weights else 0
    batch = min(spec.dataset.batch_size, max(info.n_samples, 1))
    activations = 2 * batch * _activations_per_sample(spec, info) * FLOAT
    return ResourceEstimate(
        parameters=params,
        parameter_bytes=2 * weights,
        optimizer_bytes=optimizer,
        copy_bytes=weights + optimizer + best,
        activation_bytes=activations,
        dataset_bytes=_dataset_bytes(spec, info),
    )


@dataclass(frozen=True)
class CheckpointSize:
    """What one checkpoint of the plan stores, at least (fp32; buffers, the RNG state and
    the files' headers come on top): the weights file, and the resume file's optimizer
    slots and (``restore_best_weights``) the best epoch's weights."""

    weights: int
    optimizer: int
    best: int

    @property
    def total(self) -> int:
        return self.weights + self.optimizer + self.best


def checkpoint_size(spec: JobSpec, est: ResourceEstimate) -> CheckpointSize:
    weights = est.parameters * FLOAT
    best = weights if spec.early_stopping and spec.early_stopping.restore_best_weights else 0
    return CheckpointSize(weights=weights, optimizer=est.optimizer_bytes, best=best)


def checkpoints_saved(spec: JobSpec) -> int:
    """How many checkpoints a run saves: one every ``every_n_epochs`` epochs, and the last."""
    return (spec.epochs - 1) // spec.checkpointing.every_n_epochs + 1


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _biggest_part(spec: JobSpec, est: ResourceEstimate) -> tuple[tuple[str | int, ...], str]:
    """The field to change for the largest share of the estimate, and a hint."""
    weights = est.parameter_bytes + est.optimizer_bytes + est.copy_bytes
    source = spec.dataset.source
    synthetic = isinstance(source, BuiltinSource) and source.name == "synthetic"
    if est.dataset_bytes >= max(weights, est.activation_bytes):
        if synthetic:
            return ("dataset", "source", "synthetic"), "generate fewer or smaller samples"
        return ("dataset", "source"), "use a smaller dataset"
    if est.activation_bytes >= weights:
        return ("dataset", "batch_size"), "lower batch_size (or use a smaller model)"
    return ("model",), "use a smaller model"


def check_resources(spec: JobSpec, info: DatasetInfo, limits: ResourceLimits) -> list[SpecProblem]:
    """Problems when the job exceeds the operator's limits ([] = it fits)."""
    out: list[SpecProblem] = []
    runtime = spec.limits.max_runtime_seconds
    ceiling = limits.max_runtime_seconds
    if ceiling is not None and runtime is not None and runtime > ceiling:
        out.append(SpecProblem(("limits", "max_runtime_seconds"),
                               f"max_runtime_seconds {runtime} is above this deployment's "
                               f"ceiling of {ceiling} (TRAINFORGE_MAX_RUNTIME_SECONDS): lower it",
                               "runtime_above_ceiling"))  # fmt: skip
    try:
        est = estimate(spec, info)
    except TrainError:
        return out  # the model does not fit the data: check_spec says so
    if est.parameters > limits.max_parameters:
        out.append(SpecProblem(("model",), f"the model has {est.parameters:,} parameters; this "
                               f"deployment trains at most {limits.max_parameters:,} "
                               "(TRAINFORGE_MAX_PARAMETERS): use fewer or narrower layers",
                               "too_many_parameters"))  # fmt: skip
    if est.memory_bytes > limits.max_job_memory_bytes:
        loc, hint = _biggest_part(spec, est)
        out.append(SpecProblem(loc, f"training would need about {_gib(est.memory_bytes)} "
                               f"(parameters and gradients {_gib(est.parameter_bytes)}, "
                               f"optimizer {_gib(est.optimizer_bytes)}, activations "
                               f"{_gib(est.activation_bytes)}, dataset "
                               f"{_gib(est.dataset_bytes)}); a job may use at most "
                               f"{_gib(limits.max_job_memory_bytes)} "
                               f"(TRAINFORGE_MAX_JOB_MEMORY_BYTES): {hint}",
                               "job_memory_exceeded"))  # fmt: skip
    return out


def out_of_memory_message(spec: JobSpec, info: DatasetInfo, device: str, detail: str) -> str:
    """What a job that ran out of device memory is told (status_reason resources_exceeded):
    what to change first, and the memory the plan estimated for it."""
    try:
        est: ResourceEstimate | None = estimate(spec, info)
    except TrainError:
        est = None
    hint = f"lower dataset.batch_size (now {spec.dataset.batch_size}) or use a smaller model"
    if est is not None:
        where, what = _biggest_part(spec, est)
        if where != ("dataset", "batch_size"):
            hint = f"{what} ({'.'.join(map(str, where))}), or {hint}"
        hint += f"; the plan estimated {_gib(est.memory_bytes)} for this job at fp32"
    return f"the job ran out of memory on {device} ({detail}): {hint}"

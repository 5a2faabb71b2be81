"""Dataset facts and the semantic checks a spec must pass before it is queued.

Torch-free: the API runs :func:`check_spec` on every submitted spec (after
pydantic validation) and answers 422 with *all* problems at once, each with
its location inside the spec. The worker never relies on these checks having
run -- the engine raises its own errors -- but a spec that passes them should
not fail for any reason they cover.

Choices (also in docs/spec.md):

- ``batch_size`` larger than the training split is allowed, as in Keras: an
  epoch is then one (partial) batch.
- Monitors are limited to what the job logs per epoch: ``loss`` and
  ``accuracy`` (classification only), the extra ``metrics`` it asks for, and
  their ``val_`` twins when there is a validation split. An extra metric that is
  monitored must be in ``metrics``, and each must fit the task
  (``ml.metric_names``). ``checkpointing.monitor`` is only checked while
  ``keep_best > 0`` (otherwise nothing reads it).
- The validation split is stratified for classification, so each side must
  hold at least one sample per class (scikit-learn's stratified split rule).
"""

from __future__ import annotations

import math
from typing import Literal

from ml.dataset_info import DatasetInfo as DatasetInfo
from ml.dataset_info import SpecProblem as SpecProblem
from ml.graph_spec import GraphModel, ResNetModel, TransformerModel
from ml.metric_names import is_metric_name, metric_task, misfit
from ml.schedules import warmup_steps
from ml.shorthands import as_graph
from ml.spec import (
    BuiltinSource,
    CNNModel,
    CosineSchedule,
    JobSpec,
    LossSpec,
    MLPModel,
    MultiStepSchedule,
    OneCycleSchedule,
    ReduceOnPlateauSchedule,
    TextModel,
    loss_kind,
)

# Facts about the scikit-learn datasets, hard-coded so that validating a spec
# loads nothing (tests/ml/test_checks.py compares them with scikit-learn).
_BUILTIN: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("classification", "image", 1797, 64, (1, 8, 8), 10),
    "iris": DatasetInfo("classification", "tabular", 150, 4, None, 3),
    "wine": DatasetInfo("classification", "tabular", 178, 13, None, 3),
    "breast_cancer": DatasetInfo("classification", "tabular", 569, 30, None, 2),
    "diabetes": DatasetInfo("regression", "tabular", 442, 10, None, 0),
}


# The most optimizer steps one job may plan (epochs x steps per epoch): about 11 days at
# 1,000 steps a second. Documented in docs/spec.md.
MAX_TOTAL_STEPS = 1_000_000_000


def builtin_info(source: BuiltinSource) -> DatasetInfo:
    """What a builtin dataset looks like; ``synthetic`` follows its options."""
    if source.name != "synthetic":
        return _BUILTIN[source.name]
    opts = source.synthetic
    task: Literal["classification", "regression"] = (
        "regression" if opts.n_classes == 0 else "classification"
    )
    if opts.image_shape is not None:
        c, h, w = opts.image_shape
        return DatasetInfo(
            task, "image", opts.n_samples, c * h * w, opts.image_shape, opts.n_classes
        )
    return DatasetInfo(task, "tabular", opts.n_samples, opts.n_features, None, opts.n_classes)


def split_sizes(n_samples: int, validation_split: float) -> tuple[int, int]:
    """(n_train, n_val) exactly as scikit-learn's ``train_test_split(test_size=split)``.

    ``n_val = ceil(n_samples * split)`` computed in floating point, as
    scikit-learn does (so 100 samples at 0.07 give 8 for validation, not 7);
    a split of 0 means no validation set. Re-exported by ``ml.plan``.
    """
    n_val = math.ceil(n_samples * validation_split) if validation_split > 0 else 0
    return n_samples - n_val, n_val


MONITORABLE = ("loss", "accuracy", "val_loss", "val_accuracy")


def monitorable_metrics(spec: JobSpec, info: DatasetInfo) -> list[str]:
    """The metric names this job can monitor (early stopping, plateau, best checkpoints)."""
    _, n_val = split_sizes(info.n_samples, spec.dataset.validation_split)
    names = ["loss"] + (["accuracy"] if info.task == "classification" else [])
    names += [m for m in spec.metrics if misfit(m, info.task, info.n_classes) is None]
    return names + ([f"val_{n}" for n in names] if n_val > 0 else [])


def check_spec(spec: JobSpec, info: DatasetInfo) -> list[SpecProblem]:
    """Every semantic problem of ``spec`` on a dataset described by ``info`` ([] = fine),
    step by step in the order a user reads a spec: the data, the model, the loss, the
    starting weights, the metrics and monitors, the schedule and the run's length."""
    n_train, _ = split_sizes(info.n_samples, spec.dataset.validation_split)
    return [
        *_data(spec, info),
        *_model_vs_modality(spec, info),
        *_attention_heads(spec),
        *(_graph(spec, spec.model, info) if isinstance(spec.model, GraphModel) else []),
        *_batch_norm(spec, n_train),
        *_loss_vs_task(spec, info),
        *_class_weight(spec, info),
        *_warm_start(spec, info),
        *_lr_multipliers(spec, info),
        *_metrics_and_monitors(spec, info),
        *_data_parallel(spec),
        *_schedule(spec, n_train),
        *_run_length(spec),
    ]


def _data(spec: JobSpec, info: DatasetInfo) -> list[SpecProblem]:
    """The data itself: image shape, class count, and the split it leaves."""
    problems: list[SpecProblem] = []
    classification = info.task == "classification"
    source = spec.dataset.source
    # Shape and class count come from the synthetic options or from an upload.
    synthetic = isinstance(source, BuiltinSource) and source.name == "synthetic"
    src_loc: tuple[str, ...] = ("dataset", "source") + (("synthetic",) if synthetic else ())
    if info.image_shape is not None and min(info.image_shape) < 1:
        shape = list(info.image_shape)
        problems.append(SpecProblem((*src_loc, "image_shape"),
            f"every image dimension must be >= 1, got {shape}", "invalid_image_shape"))  # fmt: skip
    if classification and info.n_classes < 2:
        problems.append(SpecProblem((*src_loc, "n_classes"),
            "classification needs at least 2 classes (0 makes a regression target)",
            "too_few_classes"))  # fmt: skip
    n_train, n_val = split_sizes(info.n_samples, spec.dataset.validation_split)
    split = ("dataset", "validation_split")
    if n_train < 1:
        problems.append(SpecProblem(split, f"validation_split {spec.dataset.validation_split} "
            f"leaves no training sample out of {info.n_samples}; lower it",
            "split_empty_train"))  # fmt: skip
    elif classification and n_val > 0 and min(n_train, n_val) < info.n_classes:
        problems.append(SpecProblem(split, f"the stratified split gives {n_train} training and "
            f"{n_val} validation samples; each side needs at least one per class "
            f"({info.n_classes}): change validation_split",
            "split_too_small_for_stratify"))  # fmt: skip
    return problems


def _model_vs_modality(spec: JobSpec, info: DatasetInfo) -> list[SpecProblem]:
    """Augmentation and the model's kind against the data's modality."""
    problems: list[SpecProblem] = []
    modality = info.modality
    if spec.augmentation is not None and modality != "image":
        problems.append(SpecProblem(("augmentation",), "augmentation applies to images only "
            f"and this dataset is {modality}: remove the augmentation part",
            "augmentation_not_image"))  # fmt: skip
    model, kind = spec.model, ("model", "kind")
    if isinstance(model, CNNModel) and modality != "image":
        use = "'mlp'" if modality == "tabular" else "'text'"
        problems.append(SpecProblem(kind, f"a cnn needs image data and this dataset is "
            f"{modality}: use {use}", "model_needs_image"))  # fmt: skip
    elif isinstance(model, TextModel) and modality != "text":
        use = "'cnn' or 'mlp'" if modality == "image" else "'mlp'"
        problems.append(SpecProblem(kind, f"a text model needs text data and this dataset is "
            f"{modality}: use {use}", "model_needs_text"))  # fmt: skip
    elif isinstance(model, MLPModel) and modality == "text":
        problems.append(SpecProblem(kind, "an mlp cannot read raw text: use 'text'",
            "model_not_for_text"))  # fmt: skip
    elif isinstance(model, ResNetModel) and modality != "image":
        use = "'mlp'" if modality == "tabular" else "'text' or 'transformer'"
        problems.append(SpecProblem(kind, f"a resnet needs image data and this dataset is "
            f"{modality}: use {use}", "model_needs_image"))  # fmt: skip
    elif isinstance(model, TransformerModel) and modality != "text":
        use = "'cnn', 'resnet' or 'mlp'" if modality == "image" else "'mlp'"
        problems.append(SpecProblem(kind, f"a transformer needs text data and this dataset is "
            f"{modality}: use {use}", "model_needs_text"))  # fmt: skip
    return problems


def _attention_heads(spec: JobSpec) -> list[SpecProblem]:
    """A transformer's width (a text model's embedding) splits evenly across its heads."""
    model, heads = spec.model, ("model", "num_heads")
    if isinstance(model, TransformerModel) and model.width % model.num_heads:
        return [SpecProblem(heads, f"the transformer splits width {model.width} across "
            f"num_heads {model.num_heads}: pick a num_heads that divides it",
            "heads_do_not_divide_embedding")]  # fmt: skip
    if (
        isinstance(model, TextModel)
        and model.encoder == "transformer"
        and (model.embedding_dim % model.num_heads)
    ):
        return [SpecProblem(heads, f"the transformer splits embedding_dim "
            f"{model.embedding_dim} across num_heads {model.num_heads}: pick a num_heads that "
            "divides it", "heads_do_not_divide_embedding")]  # fmt: skip
    return []


def _batch_norm(spec: JobSpec, n_train: int) -> list[SpecProblem]:
    """Batch normalization cannot train on a batch of one sample (PyTorch raises; the last
    partial batch of an epoch is kept, as in Keras)."""
    model, batch_size = spec.model, spec.dataset.batch_size
    uses_batch_norm = isinstance(model, MLPModel | CNNModel) and model.normalization == "batch"
    if isinstance(model, GraphModel):
        uses_batch_norm = any(layer.op == "batch_norm" for layer in model.layers)
    uses_batch_norm = uses_batch_norm or isinstance(model, ResNetModel)
    if not uses_batch_norm or n_train <= 0:
        return []
    loc = ("dataset", "batch_size")
    if batch_size == 1:
        return [SpecProblem(loc, "batch normalization cannot train on batches of one "
            "sample: use batch_size >= 2 or model.normalization 'layer'",
            "batch_norm_single_sample_batch")]  # fmt: skip
    if n_train % batch_size == 1:
        return [SpecProblem(loc, f"the {n_train} training samples leave a last batch of "
            f"one sample at batch_size {batch_size}, which batch normalization "
            "cannot train on: change batch_size or validation_split",
            "batch_norm_single_sample_batch")]  # fmt: skip
    if _replica_of_one(spec, n_train):
        per = spec.dataset.batch_size // spec.resources.devices
        return [SpecProblem(loc, f"with resources.devices {spec.resources.devices} each "
            f"device normalizes its own {per} of the {spec.dataset.batch_size} rows of a batch, "
            f"and the {n_train} training samples leave one device a slice of one sample, which "
            "batch normalization cannot train on: set resources.sync_batch_norm true, or change "
            "batch_size or validation_split", "batch_norm_single_sample_batch")]  # fmt: skip
    return []


def _loss_vs_task(spec: JobSpec, info: DatasetInfo) -> list[SpecProblem]:
    """The loss (and label smoothing) against classification or regression."""
    problems: list[SpecProblem] = []
    classification = info.task == "classification"
    loss = loss_kind(spec.loss)
    if loss == "cross_entropy" and not classification:
        problems.append(SpecProblem(("loss",), "cross_entropy needs class labels and this "
            "dataset is a regression: use 'mse', 'mae', 'huber' or 'auto'",
            "loss_task_mismatch"))  # fmt: skip
    if loss in ("mse", "mae", "huber") and classification:
        problems.append(SpecProblem(("loss",), f"{loss} needs a regression target and this "
            "dataset has classes: use 'cross_entropy' or 'auto'",
            "loss_task_mismatch"))  # fmt: skip
    if spec.regularization.label_smoothing > 0 and not classification:
        problems.append(SpecProblem(("regularization", "label_smoothing"),
            "label smoothing applies to class labels: set it to 0 for a regression",
            "label_smoothing_regression"))  # fmt: skip
    return problems


def _metrics_and_monitors(spec: JobSpec, info: DatasetInfo) -> list[SpecProblem]:
    """Extra metrics that fit the task, and monitors that the job produces."""
    problems: list[SpecProblem] = []
    for i, name in enumerate(spec.metrics):
        why = misfit(name, info.task, info.n_classes)
        if why is not None:
            problems.append(SpecProblem(("metrics", i), f"{why}: remove it",
                "metric_task_mismatch"))  # fmt: skip
    produced = monitorable_metrics(spec, info)
    if spec.early_stopping is not None:
        problems += monitor_problems(
            ("early_stopping", "monitor"), spec.early_stopping.monitor, produced
        )
    if spec.checkpointing.keep_best > 0:
        hint = " (or set checkpointing.keep_best to 0)"
        problems += monitor_problems(
            ("checkpointing", "monitor"), spec.checkpointing.monitor, produced, hint
        )
    if isinstance(spec.schedule, ReduceOnPlateauSchedule):
        problems += monitor_problems(("schedule", "monitor"), spec.schedule.monitor, produced)
    return problems


def _data_parallel(spec: JobSpec) -> list[SpecProblem]:
    """batch_size is the global batch, split evenly among the devices."""
    devices, batch = spec.resources.devices, spec.dataset.batch_size
    if devices > 1 and batch % devices:
        return [SpecProblem(("dataset", "batch_size"), f"dataset.batch_size {batch} is the "
            f"global batch: it must divide evenly among resources.devices {devices} (each "
            f"device takes batch_size / devices rows); use a multiple of {devices}, e.g. "
            f"{' or '.join(str(b) for b in _multiples_near(batch, devices))}",
            "batch_not_divisible")]  # fmt: skip
    return []


def _run_length(spec: JobSpec) -> list[SpecProblem]:
    """Early stopping that starts looking after the last epoch would never stop anything."""
    es = spec.early_stopping
    if es is not None and es.start_from_epoch >= spec.epochs:
        return [SpecProblem(("early_stopping", "start_from_epoch"),
            f"start_from_epoch {es.start_from_epoch} is not before the last epoch "
            f"({spec.epochs - 1}, counting from 0): early stopping would never look at a "
            "metric", "start_after_run")]  # fmt: skip
    return []


def _replica_of_one(spec: JobSpec, n_train: int) -> bool:
    """Per-replica batch norm (devices > 1, no sync) with a device's slice of one row: the
    full batches' ``batch_size / devices``, or the part of the last batch one device gets."""
    devices, batch = spec.resources.devices, spec.dataset.batch_size
    if devices == 1 or spec.resources.sync_batch_norm or batch % devices:
        return False
    per, last = batch // devices, n_train % batch
    return per == 1 or (last > 0 and last % per == 1)


def _multiples_near(n: int, k: int) -> list[int]:
    below = n - n % k
    return [b for b in (below, below + k) if b > 0]


def _class_weight(spec: JobSpec, info: DatasetInfo) -> list[SpecProblem]:
    loss = spec.loss
    if not isinstance(loss, LossSpec) or loss.class_weight is None:
        return []
    loc: tuple[str | int, ...] = ("loss", "class_weight")
    if info.task != "classification":
        msg = (
            "class weights apply to class labels and this dataset is a regression: "
            "remove loss.class_weight"
        )
        return [SpecProblem(loc, msg, "class_weight_regression")]
    if loss.class_weight == "balanced":
        return []
    last = info.n_classes - 1
    return [
        SpecProblem(
            (*loc, label),
            f"class {label} does not exist: the dataset's classes are 0 to {last}",
            "class_weight_unknown_class",
        )
        for label in loss.class_weight
        if int(label) > last
    ]


def _warm_start(spec: JobSpec, info: DatasetInfo) -> list[SpecProblem]:
    warm = spec.warm_start
    if warm is None:
        return []
    out = _warm_start_layers(spec, info)
    if warm.optimizer_state and (warm.freeze or warm.reset):
        msg = (
            "optimizer_state continues the source's run as it was: it cannot freeze or reset "
            "layers (set optimizer_state false to fine-tune instead)"
        )
        out.append(
            SpecProblem(("warm_start", "optimizer_state"), msg, "warm_start_optimizer_state")
        )
    for name in sorted(set(warm.freeze) & set(warm.reset)):
        i = warm.reset.index(name)
        out.append(SpecProblem(("warm_start", "reset", i), f"layer {name!r} is both frozen and "
                               "reset: a frozen layer would keep its fresh initialisation",
                               "warm_start_freeze_and_reset"))  # fmt: skip
    return out


def plan_ids(spec: JobSpec, info: DatasetInfo) -> list[str] | None:
    """The ids ``plan.layers`` gives the model's layers (``layers.<i>``, a graph layer's own
    ``id``, ``head``); None where the model does not fit the data or builds no graph here."""
    model = spec.model
    if isinstance(model, CNNModel | ResNetModel) and info.image_shape is None:
        return None
    graph = as_graph(model, info, spec.regularization.dropout)
    if graph is None:  # text: may name its modules (as before graphs), checked at start
        return None
    ids = [f"layers.{i}" for i in range(len(graph.layers))]
    return ids + [layer.id for layer in graph.layers if layer.id] + ["head"]


def _unknown_layer(ids: list[str], loc: tuple[str | int, ...], name: str) -> SpecProblem:
    own = [x for x in ids if not x.startswith("layers.")]
    last = sum(x.startswith("layers.") for x in ids) - 1
    shown = ", ".join([*own, "layers.0", "…", f"layers.{last}"])
    return SpecProblem(loc, f"this model has no layer {name!r}: name a layer of plan.layers "
                       f"({shown})", "warm_start_unknown_layer" if loc[0] == "warm_start"
                       else "unknown_layer")  # fmt: skip


def _warm_start_layers(spec: JobSpec, info: DatasetInfo) -> list[SpecProblem]:
    """freeze / reset name layers by their ``plan.layers`` id (``layers.<i>``, a layer's own
    ``id``, ``head``); a name of digits only is a module index (older specs), checked when
    the job starts."""
    warm, ids = spec.warm_start, plan_ids(spec, info)
    if warm is None or ids is None:
        return []
    out = []
    for field in ("freeze", "reset"):
        for i, name in enumerate(getattr(warm, field)):
            if name in ids or name.isdigit():
                continue
            out.append(_unknown_layer(ids, ("warm_start", field, i), name))
    return out


def _lr_multipliers(spec: JobSpec, info: DatasetInfo) -> list[SpecProblem]:
    ids = plan_ids(spec, info)
    if not spec.lr_multipliers or ids is None:
        return []
    return [
        _unknown_layer(ids, ("lr_multipliers", name), name)
        for name in spec.lr_multipliers
        if name not in ids
    ]


def is_monitorable_name(name: str) -> bool:
    """A name some job can log per epoch (loss, accuracy, an extra metric, val_ twins)."""
    base = name.removeprefix("val_")
    return name in MONITORABLE or is_metric_name(base)


def _graph(spec: JobSpec, model: GraphModel, info: DatasetInfo) -> list[SpecProblem]:
    from ml.shapes import infer  # ml.shapes builds on this module's DatasetInfo and SpecProblem

    out = infer(model, info, info.n_classes if info.task == "classification" else 1).problems
    if spec.regularization.dropout > 0:
        out.append(SpecProblem(("regularization", "dropout"), "a graph places its own dropout "
                               "layers ({op: dropout, rate: ...}); regularization.dropout "
                               "applies to the mlp and cnn shorthands only: set it to 0",
                               "dropout_in_graph"))  # fmt: skip
    return out


def monitor_problems(
    loc: tuple[str | int, ...], name: str, produced: list[str], hint: str = ""
) -> list[SpecProblem]:
    """Why ``name`` cannot be monitored by a job that logs ``produced`` ([]: it can)."""
    if not is_monitorable_name(name):
        choices = ", ".join(repr(m) for m in produced)
        return [SpecProblem(loc, f"{name!r} is not a metric a job can monitor: use one of "
                            f"{choices}{hint}", "monitor_unknown")]  # fmt: skip
    out: list[SpecProblem] = []
    base = name.removeprefix("val_")
    task = metric_task(base)
    if task is not None and base not in produced:
        kind = "a classification" if task == "classification" else "a regression"
        out.append(SpecProblem(loc, f"{name!r} is not logged by this job: it needs {base!r} in "
                               f"metrics and {kind} dataset{hint}",
                               "monitor_not_in_metrics"))  # fmt: skip
    if base == "accuracy" and "accuracy" not in produced:
        other = name.replace("accuracy", "loss")
        out.append(SpecProblem(loc, f"{name!r} is only computed for classification: monitor "
                               f"{other!r}{hint}", "monitor_needs_classification"))  # fmt: skip
    if name.startswith("val_") and "val_loss" not in produced:
        out.append(SpecProblem(loc, f"{name!r} needs a validation split: set "
                               f"dataset.validation_split > 0 or monitor {base!r}{hint}",
                               "monitor_needs_validation"))  # fmt: skip
    return out


def _schedule(spec: JobSpec, n_train: int) -> list[SpecProblem]:
    sched, out = spec.schedule, []
    if n_train < 1:
        # No step count: the schedules that need one say so; the split problem says why.
        if isinstance(sched, (OneCycleSchedule, CosineSchedule)):
            out.append(SpecProblem(("schedule", "kind"), f"{sched.kind} needs the number of "
                                   "optimizer steps, and the training split is empty",
                                   "schedule_needs_steps"))  # fmt: skip
        return out
    steps_per_epoch = math.ceil(n_train / spec.dataset.batch_size)
    total = spec.epochs * steps_per_epoch
    if total > MAX_TOTAL_STEPS:
        out.append(SpecProblem(("epochs",), f"{spec.epochs} epochs x {steps_per_epoch} steps "
                               f"per epoch ({n_train} training samples / batch_size "
                               f"{spec.dataset.batch_size}) = {total} optimizer steps, over the "
                               f"maximum of {MAX_TOTAL_STEPS}: lower epochs or raise batch_size",
                               "too_many_steps"))  # fmt: skip
    warm = warmup_steps(sched.warmup, steps_per_epoch)
    if warm > total:
        out.append(SpecProblem(("schedule", "warmup"), f"the warmup lasts {warm} optimizer "
                               f"steps but the run has only {total} ({spec.epochs} epochs x "
                               f"{steps_per_epoch} steps): shorten it",
                               "warmup_too_long"))  # fmt: skip
    if isinstance(sched, MultiStepSchedule):
        for i, m in enumerate(sched.milestones):
            if m >= spec.epochs:
                out.append(SpecProblem(("schedule", "milestones", i), f"milestone {m} is never "
                                       f"reached: epochs run from 0 to {spec.epochs - 1}",
                                       "milestone_after_run"))  # fmt: skip
    if isinstance(sched, ReduceOnPlateauSchedule) and sched.min_lr > spec.optimizer.lr:
        out.append(SpecProblem(("schedule", "min_lr"), f"min_lr {sched.min_lr} is above the "
                               f"optimizer's lr {spec.optimizer.lr}: the first reduction would "
                               "raise the rate", "min_lr_above_lr"))  # fmt: skip
    return out

"""The training loop: ``train(spec, ...)`` runs one job to its end and says how it ended.

Conventions the sinks see:

- ``step`` is the global optimizer step count (the first step is 1); an epoch's
  metrics are logged at its last step, so a resumed run continues the series
  with no gap and no duplicate.
- ``epoch`` is the 0-based index of the epoch that step belongs to (Keras
  callback numbering, also used by ``TrainResult.stopped_epoch``).
  ``TrainResult.epochs_completed`` is a count.
- ``on_progress(epochs_completed, step)`` is called every ``SYNC_EVERY`` steps
  and at each epoch end; during an epoch its first argument is also that
  epoch's 0-based index.
- Metrics per epoch: loss (data loss plus the l1/l2 penalty, as Keras reports
  it), accuracy, val_loss, val_accuracy, lr (the rate of the epoch's last
  step), grad_norm (mean pre-clip global gradient norm over the epoch's
  steps: all of them with clipping, which computes it anyway, else every
  ``GRAD_NORM_EVERY``-th one, the first included -- as Lightning samples it
  every logging interval), epoch_seconds (training plus validation) and
  samples_per_second (training samples over training time).

The device is read back only every ``SYNC_EVERY`` steps and at epoch ends:
each step leaves its loss, outputs and grad norm on the device and the host
collects what it needs in one copy. A non-finite loss is found there, with
the exact step it happened at.
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from ml import logsink
from ml.architecture import TrainError, is_classification
from ml.checkpoint import RunState, pack, unpack
from ml.data import (
    LoadedDataset,
    load_dataset,
    n_batches,
    prepare,
    train_batches,
)
from ml.distributed import Shard
from ml.early_stopping import EarlyStopping
from ml.logsink import LogSink, NullLogSink
from ml.metrics import EpochPredictions
from ml.pruning import EpochPruner
from ml.resources import ResourcesExceeded, out_of_memory_message
from ml.schedules import LRSchedule, ReduceOnPlateau, build_schedule
from ml.sinks import (
    CheckpointBlob,
    CheckpointSink,
    MetricSink,
    NeverStop,
    RunControl,
    StepProgress,
)
from ml.spec import JobSpec, ResourcesSpec
from ml.trainer import StepStats, Trainer
from ml.warm_start import WarmStart

__all__ = ["InvalidSpec", "LoadedDataset", "NonFiniteLoss", "TrainError", "TrainResult", "train"]

SYNC_EVERY = 32  # optimizer steps between reads of the device-side accumulators
PROGRESS_SECONDS = 0.5  # with on_step_progress, the device is also read at least this often
GRAD_NORM_EVERY = 16  # without clipping, grad_norm is sampled on every 16th step of an epoch


@dataclass
class TrainResult:
    status_reason: Literal["completed", "early_stopped", "pruned", "canceled"]
    epochs_completed: int
    step: int  # global optimizer steps done
    final_metrics: dict[str, float]  # last epoch's, or the best epoch's with restore_best_weights
    stopped_epoch: int | None  # 0-based epoch at which early stopping fired


class NonFiniteLoss(Exception):
    def __init__(self, step: int, epoch: int, value: float) -> None:
        self.step, self.epoch, self.value = step, epoch, value
        super().__init__(
            f"the training loss became {value} at step {step} (epoch {epoch}, counting from 0). "
            "Try a lower optimizer.lr, gradient clipping (clipping.kind 'global_norm'), "
            "dataset.preprocessing.normalization 'standard', or resources.precision 'fp32'."
        )

    def __reduce__(self) -> tuple[object, ...]:  # crosses from a data-parallel rank
        return (NonFiniteLoss, (self.step, self.epoch, self.value))


@dataclass
class _Meter:
    """One epoch's sums on the host, fed from the device at sync points only."""

    loss: float = 0.0
    correct: float = 0.0
    samples: int = 0
    grad_norm: float = 0.0
    norms: int = 0
    seconds: float = 0.0  # time already spent in this epoch before a resume
    lr: float = 0.0
    pending: list[tuple[int, int, StepStats]] = field(default_factory=list)
    classification: bool = True
    # spec.metrics: the epoch's outputs, gathered on the device at each sync (reusing the
    # accuracy's argmax) and computed at the epoch's end (a resumed epoch's training
    # metrics cover the batches run after the resume).
    predictions: EpochPredictions | None = None
    shard: Shard | None = None  # data parallel: sums are reduced over the ranks at each sync

    def add(self, step: int, n: int, stats: StepStats) -> None:
        self.pending.append((step, n, stats))

    def sync(self, epoch: int) -> None:
        if not self.pending:
            return
        # Batched here rather than per step: a few kernels per sync instead of per step.
        stats = [s for _, _, s in self.pending]
        norms = [s.grad_norm.float() for s in stats if s.grad_norm is not None]
        parts = [torch.stack([s.loss for s in stats] + norms)]
        outputs = [s.logits for s in stats if s.logits is not None]
        targets = [s.labels for s in stats if s.labels is not None]
        logits = outputs if self.classification else []
        if logits:
            out, target = torch.cat(logits), torch.cat(targets)
            predicted = out.argmax(1)
            parts.append((predicted == target).sum().view(1).to(parts[0].dtype))
            if self.predictions is not None:
                self.predictions.add(out, target, predicted)
        elif outputs and self.predictions is not None:  # a regression's outputs
            self.predictions.add(torch.cat(outputs), torch.cat(targets))
        if self.shard is not None:  # the global batch's losses and correct counts
            if norms:  # the same on every rank (taken after DDP's all-reduce): not summed
                head = parts[0]
                parts[0] = torch.cat([self.shard.sum(head[: len(stats)]), head[len(stats) :]])
                parts[1:] = [self.shard.sum(p) for p in parts[1:]]
            else:
                parts = [self.shard.sum(p) for p in parts]
        values = torch.cat(parts).tolist()  # the one host sync
        k = len(stats)
        for (step, n, _), loss in zip(self.pending, values[:k], strict=True):
            if not math.isfinite(loss):
                raise NonFiniteLoss(step, epoch, loss)
            self.loss, self.samples = self.loss + loss * n, self.samples + n
        for norm in values[k : k + len(norms)]:
            if math.isfinite(norm):  # fp16 overflow steps are skipped by the scaler
                self.grad_norm, self.norms = self.grad_norm + norm, self.norms + 1
        if logits:
            self.correct += values[-1]
        self.pending.clear()

    def values(self, classification: bool, names: list[str], n_classes: int) -> dict[str, float]:
        out = {"loss": self.loss / max(self.samples, 1)}
        if classification:
            out["accuracy"] = self.correct / max(self.samples, 1)
        if self.predictions is not None:
            if self.shard is not None:  # every rank's outputs (the metrics ignore their order)
                self._gather_predictions(self.predictions, self.shard)
            out |= self.predictions.compute(names, n_classes)
            self.predictions.clear()
        out["lr"] = self.lr
        out["grad_norm"] = self.grad_norm / max(self.norms, 1)
        return out

    @staticmethod
    def _gather_predictions(p: EpochPredictions, shard: Shard) -> None:
        mine = [(o.cpu(), t.cpu()) for o, t in zip(p.outputs, p.targets, strict=True)]
        device = p.outputs[0].device if p.outputs else torch.device("cpu")
        p.clear()
        for part in shard.gather(mine):
            for o, t in part:
                p.add(o.to(device), t.to(device), o.to(device) if o.ndim == 1 else None)

    def state(self, seconds: float) -> dict[str, float]:
        keys = ("loss", "correct", "samples", "grad_norm", "norms", "lr")
        return {k: float(getattr(self, k)) for k in keys} | {"seconds": seconds}

    @staticmethod
    def restore(state: dict[str, float]) -> _Meter:
        get = state.get
        return _Meter(
            loss=get("loss", 0.0),
            correct=get("correct", 0.0),
            samples=int(get("samples", 0)),
            grad_norm=get("grad_norm", 0.0),
            norms=int(get("norms", 0)),
            seconds=get("seconds", 0.0),
            lr=get("lr", 0.0),
        )


def resolve_device(resources: ResourcesSpec) -> torch.device:
    if resources.device == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        # The process's current device, by index: what CUDA_VISIBLE_DEVICES gave this worker
        # (the log and the checkpoint name it `cuda:0`, not a bare `cuda`).
        return torch.device("cuda", torch.cuda.current_device())
    if resources.device == "cuda":
        raise TrainError(
            "resources.device is 'cuda' but this worker has no usable CUDA GPU; "
            "use 'auto' or 'cpu', or submit to a GPU queue"
        )
    return torch.device("cpu")


# What torch.use_deterministic_algorithms accepts for cuBLAS (see the worker package).
DETERMINISTIC_CUBLAS = (":4096:8", ":16:8")


def check_cublas_config(device: torch.device, deterministic: bool) -> None:
    """A deterministic CUDA run needs CUBLAS_WORKSPACE_CONFIG from before the process's first
    cuBLAS call, which latches it: set here only while CUDA is untouched (a library caller's
    first run); later, a run that would fail at its first matmul is refused with the reason."""
    if not deterministic or device.type != "cuda":
        return
    value = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if value in DETERMINISTIC_CUBLAS:
        return
    if value is None and not torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = DETERMINISTIC_CUBLAS[0]
        return
    raise TrainError(
        f"deterministic: true on CUDA needs CUBLAS_WORKSPACE_CONFIG=:4096:8 (or :16:8) in the "
        f"process's environment before it first uses CUDA; it is {value!r} here. "
        "`trainforge worker` sets it at start; set it yourself when you call ml.train in a "
        "process of your own, or submit with deterministic: false."
    )


def check_compiler(spec: JobSpec, device: torch.device) -> None:
    """``compile: true`` builds code at run time: TorchInductor's CPU kernels need a C++
    compiler, Triton's CUDA launcher a C one. Without one the first step would crash deep
    inside torch; the job is refused up front instead, saying what is missing."""
    if not spec.resources.compile:
        return
    names = ("c++", "g++", "clang++") if device.type == "cpu" else ("cc", "gcc", "clang")
    override = os.environ.get("CXX" if device.type == "cpu" else "CC")
    if any(shutil.which(n) for n in ((override,) if override else ()) + names):
        return
    kind = "C++" if device.type == "cpu" else "C"
    raise TrainError(
        f"resources.compile needs a {kind} compiler on the worker ({', '.join(names)}) to build "
        f"the compiled kernels for {device.type}, and this worker has none: submit with "
        "resources.compile false, or install one on the worker (the Docker image has gcc/g++)"
    )


@contextmanager
def _global_settings(deterministic: bool) -> Iterator[None]:
    """Determinism and precision flags for this run only; the process's previous ones come
    back after.

    A documented choice (docs/gpu.md): fp32 is IEEE fp32 on a GPU too, for matmuls and
    convolutions alike (PyTorch's default runs cuDNN convolutions in TF32 on Ampere and
    later, and matmuls not): results stay within fp32 tolerance of the CPU and of the
    references; ``resources.precision`` bf16/fp16 is the fast path. ``cudnn.benchmark``
    stays off (PyTorch's default): each new shape (the last partial batch, validation
    batches) would pay for autotuning trials, and the choice can differ run to run."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv  # type: ignore[attr-defined]
    prev = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        matmul.fp32_precision,
        conv.fp32_precision,
    )
    matmul.fp32_precision = conv.fp32_precision = "ieee"
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.benchmark = prev[2]
        matmul.fp32_precision, conv.fp32_precision = prev[3], prev[4]


class _NullSink:
    def log(self, step: int, epoch: int, values: object) -> None: ...

    def flush(self) -> None: ...


def train(
    spec: JobSpec,
    *,
    metrics: MetricSink | None = None,
    checkpoints: CheckpointSink | None = None,
    control: RunControl | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_step_progress: Callable[[StepProgress], None] | None = None,
    dataset: LoadedDataset | None = None,
    logs: LogSink | None = None,
    pruner: EpochPruner | None = None,
    warm_start: WarmStart | None = None,
    device_ids: list[int] | None = None,
) -> TrainResult:
    """Train ``spec`` to completion, early stop or cancel; resume from ``checkpoints.load()``.

    ``logs`` receives the run's story for a human (see ``ml.logsink``); ``warm_start``
    starts from another run's weights (``ml.warm_start``; a resume overrides it). Running
    out of device memory raises ``ResourcesExceeded`` with what to change; the device's
    cached blocks are handed back after every run, however it ends.

    ``resources.devices`` > 1 trains in that many data-parallel processes (``ml.launch``);
    ``device_ids``: which of the host's GPUs they use (default ``range(devices)``)."""
    device = resolve_device(spec.resources)
    check_compiler(spec, device)
    if spec.resources.devices > 1:
        from ml.launch import train_parallel  # spawns processes: only when asked for

        return train_parallel(spec, entry=train_on, metrics=metrics, checkpoints=checkpoints,
                              control=control, on_progress=on_progress,
                              on_step_progress=on_step_progress, dataset=dataset, logs=logs,
                              pruner=pruner, warm_start=warm_start,
                              device_ids=device_ids)  # fmt: skip
    loaded = dataset if dataset is not None else load_dataset(spec)
    return train_on(spec, device, loaded, metrics=metrics, checkpoints=checkpoints,
                    control=control, on_progress=on_progress, logs=logs, pruner=pruner,
                    on_step_progress=on_step_progress, warm_start=warm_start)  # fmt: skip


def train_on(
    spec: JobSpec,
    device: torch.device,
    loaded: LoadedDataset,
    *,
    metrics: MetricSink | None,
    checkpoints: CheckpointSink | None,
    control: RunControl | None,
    on_progress: Callable[[int, int], None] | None,
    on_step_progress: Callable[[StepProgress], None] | None,
    logs: LogSink | None,
    pruner: EpochPruner | None,
    warm_start: WarmStart | None,
    shard: Shard | None = None,
) -> TrainResult:
    """``train`` on a resolved device (also one data-parallel rank's run, with ``shard``)."""
    check_cublas_config(device, spec.deterministic)
    try:
        return _train(spec, device, loaded, metrics=metrics, checkpoints=checkpoints,
                      control=control, on_progress=on_progress, logs=logs, pruner=pruner,
                      on_step_progress=on_step_progress, warm_start=warm_start,
                      shard=shard)  # fmt: skip
    except torch.OutOfMemoryError as exc:
        detail = ". ".join(str(exc).split(". ")[:2]).strip()  # what, and how much was asked
        message = out_of_memory_message(spec, loaded.info, str(device), detail)
    finally:
        release_device_memory()
    # Out of the except block: the traceback's frames (and the tensors they hold) are gone,
    # so the memory is free again for the next job of this worker.
    gc.collect()
    release_device_memory()
    raise ResourcesExceeded(message)


def release_device_memory() -> None:
    """Hand the CUDA caching allocator's unused blocks back to the driver (a no-op where
    CUDA was never initialised): the next job of this worker process, or another process
    on the GPU, can use them."""
    torch.cuda.empty_cache()


def _train(
    spec: JobSpec,
    device: torch.device,
    loaded: LoadedDataset,
    *,
    metrics: MetricSink | None,
    checkpoints: CheckpointSink | None,
    control: RunControl | None,
    on_progress: Callable[[int, int], None] | None,
    on_step_progress: Callable[[StepProgress], None] | None,
    logs: LogSink | None,
    pruner: EpochPruner | None,
    warm_start: WarmStart | None,
    shard: Shard | None = None,
) -> TrainResult:
    with _global_settings(spec.deterministic):
        torch.manual_seed(spec.seed)
        with _building("the dataset"):
            data = prepare(spec, loaded, device)
        with _building("the model, loss and optimizer"):
            trainer = Trainer(spec, data, device, warm_start, shard)
        with _building("the learning-rate schedule"):
            schedule = build_schedule(spec, n_batches(data.n_train, spec.dataset.batch_size))
        with _building("early stopping"):
            stopper = EarlyStopping(spec.early_stopping) if spec.early_stopping else None
        run = _Run(
            spec=spec,
            trainer=trainer,
            schedule=schedule,
            stopper=stopper,
            metrics=metrics if metrics is not None else _NullSink(),
            checkpoints=checkpoints,
            control=control if control is not None else NeverStop(),
            on_progress=on_progress,
            pruner=pruner,
            on_step_progress=on_step_progress,
            steps_per_epoch=n_batches(data.n_train, spec.dataset.batch_size),
            logs=logs if logs is not None else NullLogSink(),
            shard=shard,
        )
        run.say_started(device)
        if run.trainer.warm_start is not None:
            run.logs.line("info", run.trainer.warm_start.summary())
        blob = checkpoints.load() if checkpoints is not None else None
        if blob is not None:
            run.restore(blob)
            run.logs.line("info", logsink.resumed(run.state.step, run.state.epoch, run.state.batch))
        elif warm_start is not None and warm_start.resume is not None:
            _continue_from(run, warm_start.resume)
        if run.state.finished:  # a retry after the end: report it, train nothing
            return run.result()
        try:
            return _fit(run)
        finally:  # also when it raises: what was logged must be durable
            run.metrics.flush()


class InvalidSpec(TrainError):
    """The spec validated, but the engine could not build a part of it (a library refused it).

    Retrying cannot help: the job fails with ``status_reason`` ``invalid_spec`` and the
    library's own message, which says what to change.
    """

    def __init__(self, part: str, exc: Exception) -> None:
        self.part = part
        self.words = f"could not build {part} from this spec: {type(exc).__name__}: {exc}"
        super().__init__(self.words)

    def __reduce__(self) -> tuple[object, ...]:  # crosses from a data-parallel rank
        return (_invalid_spec, (self.part, self.words))


def _invalid_spec(part: str, words: str) -> InvalidSpec:
    exc = InvalidSpec.__new__(InvalidSpec)
    exc.part, exc.words = part, words
    Exception.__init__(exc, words)
    return exc


# Not the spec's fault: out of memory (a resources problem), and our own typed errors.
_NOT_THE_SPEC: tuple[type[BaseException], ...] = (TrainError, MemoryError, torch.OutOfMemoryError)


@contextmanager
def _building(part: str) -> Iterator[None]:
    """Any exception while building ``part`` from a validated spec is an ``InvalidSpec``."""
    try:
        yield
    except _NOT_THE_SPEC:
        raise
    except Exception as exc:
        raise InvalidSpec(part, exc) from exc


def _continue_from(run: _Run, source: CheckpointBlob) -> None:
    """warm_start.optimizer_state: pick up the source's run where its checkpoint left it."""
    run.restore(source)
    s = run.state
    if s.epoch >= run.spec.epochs:
        raise TrainError(
            f"warm_start.optimizer_state continues the source's run, which had done {s.epoch} "
            f"epoch(s): set epochs (the total, counted from the source's start) above that"
        )
    s.finished, s.stopped_epoch = None, None
    run.logs.line("info", f"continuing the source's run from epoch {s.epoch + 1} (step {s.step})")


def _fit(run: _Run) -> TrainResult:
    spec, s, trainer = run.spec, run.state, run.trainer
    while s.epoch < spec.epochs:
        epoch, meter = s.epoch, _Meter.restore(s.partial)
        meter.classification, meter.shard = trainer.classification, run.shard
        shard, batch_size = run.shard, spec.dataset.batch_size
        if spec.metrics:
            meter.predictions = EpochPredictions.for_names(spec.metrics, trainer.classification)
        start = time.perf_counter() - meter.seconds
        trainer.model.train()
        part = (shard.rank, shard.world) if shard is not None else None
        for xb, yb in train_batches(trainer.data, batch_size, spec.dataset.shuffle,
                                    spec.seed, epoch, start=s.batch, part=part):  # fmt: skip
            n = min(trainer.data.n_train - s.batch * batch_size, batch_size)  # the global batch
            stop, due = run.control.should_stop(), False
            if shard is not None:  # every rank stops (and syncs) at the same step, or none does
                shard.local_rows(n, batch_size)
                stop, due = shard.agree(stop, run.step_progress_due())
            if stop:
                meter.sync(epoch)
                s.partial = meter.state(time.perf_counter() - start)
                return run.finish("canceled")
            meter.lr = run.schedule.lr_at(epoch, s.batch)
            measure = s.batch % GRAD_NORM_EVERY == 0
            meter.add(s.step + 1, n, trainer.step(xb, yb, meter.lr, measure))
            s.batch, s.step = s.batch + 1, s.step + 1
            if s.step % SYNC_EVERY == 0 or due or (shard is None and run.step_progress_due()):
                meter.sync(epoch)
                run.progress()
                run.step_progress(meter)
        meter.sync(epoch)
        train_seconds = time.perf_counter() - start
        info = trainer.data.info
        values = meter.values(is_classification(info), spec.metrics, info.n_classes)
        if run.lead:  # data parallel: rank 0 validates, its figures go to every rank
            values |= trainer.evaluate()
            values["epoch_seconds"] = time.perf_counter() - start
            values["samples_per_second"] = meter.samples / max(train_seconds, 1e-9)
        if shard is not None:
            values = shard.from_lead(values if run.lead else None)
        stop = run.end_epoch(epoch, values)
        if stop or s.epoch == spec.epochs:
            return run.finish("early_stopped" if stop else "completed")
        prune = run.lead and run.pruner is not None and run.pruner.should_prune(epoch, values)
        if shard is not None:
            prune = shard.from_lead(prune if run.lead else None)
        if prune:
            return run.finish("pruned")  # a sweep's early termination (ml.pruning)
        if s.epochs_completed % spec.checkpointing.every_n_epochs == 0:
            run.save()
    return run.result()


@dataclass
class _Run:
    """Everything one run holds, and what happens at an epoch's end."""

    spec: JobSpec
    trainer: Trainer
    schedule: LRSchedule
    stopper: EarlyStopping | None
    metrics: MetricSink
    checkpoints: CheckpointSink | None
    control: RunControl
    on_progress: Callable[[int, int], None] | None
    on_step_progress: Callable[[StepProgress], None] | None = None
    steps_per_epoch: int = 0
    next_step_progress: float = 0.0  # time.monotonic() of the next due report
    logs: LogSink = field(default_factory=NullLogSink)
    pruner: EpochPruner | None = None
    state: RunState = field(default_factory=RunState)
    best_weights: dict[str, Tensor] | None = None
    shard: Shard | None = None  # data parallel: this rank; rank 0 alone writes and saves

    @property
    def lead(self) -> bool:
        return self.shard is None or self.shard.lead

    def say_started(self, device: torch.device) -> None:
        name = str(device)
        if self.shard is not None:
            name += f" (rank {self.shard.rank} of {self.shard.world} data-parallel processes)"
        if device.type == "cuda":
            name += f" ({torch.cuda.get_device_name(device)})"
        steps = n_batches(self.trainer.data.n_train, self.spec.dataset.batch_size)
        line = logsink.started(
            name, torch.get_num_threads(), self.trainer.data.n_train, steps, self.spec.epochs
        )
        self.logs.line("info", line)

    @property
    def restore_best(self) -> bool:
        return self.stopper is not None and self.stopper.spec.restore_best_weights

    def progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.state.epoch, self.state.step)

    def step_progress_due(self) -> bool:
        """A live view is fed at least every PROGRESS_SECONDS (a clock read per step)."""
        return self.on_step_progress is not None and time.monotonic() >= self.next_step_progress

    def step_progress(self, meter: _Meter) -> None:
        if self.on_step_progress is None:
            return
        self.next_step_progress = time.monotonic() + PROGRESS_SECONDS
        s = self.state
        loss = meter.loss / meter.samples if meter.samples else None
        self.on_step_progress(
            StepProgress(s.epoch, self.spec.epochs, s.step, s.batch, self.steps_per_epoch, loss)
        )

    def end_epoch(self, epoch: int, values: dict[str, float]) -> bool:
        s, stop = self.state, False
        if self.stopper is not None:
            stop = self.stopper.on_epoch_end(epoch, values)
            if self.restore_best and self.stopper.is_new_best_this_epoch():
                self.best_weights = self.trainer.snapshot()
                s.best_metrics = dict(values)
        plateau = self.schedule if isinstance(self.schedule, ReduceOnPlateau) else None
        lr_before = plateau.lr if plateau is not None else 0.0
        self.schedule.on_epoch_end(epoch, values)
        self.logs.line("info", logsink.epoch_summary(epoch, self.spec.epochs, values))
        amp = self.trainer.take_skipped_steps()
        if amp is not None and amp[0]:
            steps = n_batches(self.trainer.data.n_train, self.spec.dataset.batch_size)
            self.logs.line("warning", logsink.amp_skipped(amp[0], steps, epoch, amp[1]))
        if plateau is not None and plateau.lr < lr_before:
            msg = logsink.lr_reduced(
                plateau.spec.monitor, plateau.spec.patience, epoch, lr_before, plateau.lr
            )
            self.logs.line("info", msg)
        if stop and self.stopper is not None:
            es = self.stopper
            msg = logsink.early_stopped(
                es.spec.monitor, es.spec.patience, epoch, es.best, es.best_epoch
            )
            self.logs.line("info", msg)
        self.metrics.log(s.step, epoch, values)
        self.metrics.flush()
        s.epoch, s.batch, s.partial = epoch + 1, 0, {}
        s.epochs_completed, s.last_metrics = s.epochs_completed + 1, values
        self.progress()
        return stop

    def finish(
        self, reason: Literal["completed", "early_stopped", "pruned", "canceled"]
    ) -> TrainResult:
        s = self.state
        if reason != "canceled":
            s.finished = reason
            s.stopped_epoch = self.stopper.stopped_epoch if self.stopper else None
            if self.restore_best and self.best_weights is not None:
                self.trainer.load_weights(self.best_weights)
        self.save()
        return self.result(reason)

    def result(
        self, reason: Literal["completed", "early_stopped", "pruned", "canceled"] | None = None
    ) -> TrainResult:
        s = self.state
        final = s.best_metrics if self.restore_best and s.best_metrics and s.finished else None
        return TrainResult(
            status_reason=reason or s.finished or "completed",
            epochs_completed=s.epochs_completed,
            step=s.step,
            final_metrics=dict(final or s.last_metrics),
            stopped_epoch=s.stopped_epoch,
        )

    def save(self) -> None:
        if self.checkpoints is None or not self.lead:
            return
        s = self.state
        s.schedule = self.schedule.state_dict()
        s.early_stopping = self.stopper.state_dict() if self.stopper else None
        s.scaler = self.trainer.scaler_state()
        best = self.best_weights if self.restore_best else None
        blob = pack(self.trainer.model, self.trainer.optimizer, s, best)
        epoch = s.epoch if s.batch > 0 else max(s.epoch - 1, 0)  # the epoch of the last step
        final = s.best_metrics if s.finished and self.restore_best and s.best_metrics else None
        self.checkpoints.save(blob, s.step, epoch, final or s.last_metrics)
        self.logs.line("info", logsink.checkpoint_saved(s.step, epoch, s.finished is not None))

    def restore(self, blob: CheckpointBlob) -> None:
        notes: list[str] = []
        model, optimizer = self.trainer.model, self.trainer.optimizer
        self.state, self.best_weights = unpack(blob, model, optimizer, notes)
        for note in notes:
            self.logs.line("warning", note)
        s = self.state
        if s.schedule:
            self.schedule.load_state_dict(s.schedule)
        if self.stopper is not None and s.early_stopping is not None:
            self.stopper.load_state_dict(s.early_stopping)
        self.trainer.load_scaler_state(s.scaler)

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
from ml.device_setup import (
    check_compiler,
    check_cublas_config,
    global_settings,
    release_device_memory,
    resolve_device,
)
from ml.distributed import Shard
from ml.early_stopping import EarlyStopping
from ml.epoch_meter import EpochMeter, NonFiniteLoss
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
from ml.spec import JobSpec
from ml.trainer import Trainer
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
    with global_settings(spec.deterministic):
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
        epoch, meter = s.epoch, EpochMeter.restore(s.partial)
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

    def step_progress(self, meter: EpochMeter) -> None:
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

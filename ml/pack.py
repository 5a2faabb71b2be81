"""Packed trials: many jobs that share their shapes train as one batched program (issue 26).

``train_pack(members)`` returns, in member order, what ``ml.engine.train`` would have
returned for each member alone -- its ``TrainResult`` (completed, early_stopped, pruned,
canceled) or the exception it failed with (``NonFiniteLoss``, ``InvalidSpec``, ...). One
member's end never ends the others: the pack shrinks to the members still training.

Each member is built exactly as its solo run builds it (``torch.manual_seed(seed)``, then
the engine's ``Trainer``: same initial weights), reads the solo run's batches in the solo
run's order (members of one seed share them; other seeds read their own split, scaling
and permutation), follows its own schedule, early stopping, pruner and control, logs
its own metrics and lines, and saves and resumes the solo engine's checkpoints (its
weights and optimizer state are copied into its own solo model and optimizer, and
``ml.checkpoint`` writes them): a packed trial's checkpoint resumes solo and the other
way round, and its export and ``/predict`` are those of any job.

What runs vectorised (``ml.pack_net``, ``ml.pack_optim``): chains of dense, conv2d
(also depthwise/separable), pooling, batch/layer norm, activation, flatten and dropout
layers -- the ``mlp`` and ``cnn`` kinds and chain graphs; sgd (momentum, nesterov), adam,
adamw; every schedule (each member's own, reduce_on_plateau included); every clipping
kind; l1/l2, weight decay, label smoothing, dropout; classification and regression losses.
Everything else is a ``pack_blocker`` (``ml.pack_key``), and ``train_pack`` refuses it. A
single member, a model the batched program cannot express (found when it is built, e.g. an
uploaded table's embedded columns) or data too large for the device train solo, one after
the other, with a log line saying why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ml import engine
from ml.data import LoadedDataset, load_dataset
from ml.device_setup import release_device_memory
from ml.engine import TrainResult
from ml.logsink import LogSink
from ml.pack_build import run_pack
from ml.pack_key import pack_blocker, pack_key
from ml.pack_loop import Member
from ml.pack_net import Unpackable
from ml.pruning import EpochPruner
from ml.sinks import CheckpointSink, MetricSink, RunControl, StepProgress
from ml.spec import JobSpec

__all__ = ["PackMember", "train_pack"]


@dataclass
class PackMember:
    job_id: str
    spec: JobSpec
    metrics: MetricSink | None = None
    checkpoints: CheckpointSink | None = None
    control: RunControl | None = None  # should_stop() True -> this member stops (canceled) alone
    logs: LogSink | None = None
    pruner: EpochPruner | None = None  # prunes only this member at its rung
    on_progress: Callable[[int, int], None] | None = None
    on_step_progress: Callable[[StepProgress], None] | None = None  # within an epoch, live
    # Called as soon as this member stops training in the pack (pruned at its rung, early
    # stopped, canceled, failed, or done), with what train_pack will return for it: the
    # worker records that job's end then, while the rest of the pack trains on.
    on_end: Callable[[TrainResult | BaseException], None] | None = None


def train_pack(
    members: Sequence[PackMember],
    *,
    dataset: LoadedDataset | None = None,
    on_unpacked: Callable[[str], None] | None = None,
) -> list[TrainResult | BaseException]:
    """Train ``members`` together; each one's result (or exception) in member order.

    Raises ``ValueError`` when the members' ``pack_key`` differ or one has a
    ``pack_blocker``: such specs are not one pack. ``dataset``: the data every member reads
    (an upload, loaded by the caller); builtins are loaded here. ``on_unpacked(reason)``:
    called when the members train solo after all (the worker writes it in the sweep's log)."""
    if not members:
        return []
    for m in members:
        reason = pack_blocker(m.spec)
        if reason is not None:
            raise ValueError(f"job {m.job_id} cannot be packed: {reason}")
    keys = {pack_key(m.spec) for m in members}
    if len(keys) > 1:
        raise ValueError("the members' specs differ in more than numbers (different pack_key)")
    if len(members) == 1:
        return [_solo(members[0], dataset)]
    try:
        loaded = dataset if dataset is not None else load_dataset(members[0].spec)
    except Exception as exc:  # noqa: BLE001 -- every member fails so alone
        return [exc for _ in members]
    try:
        return run_pack([Member(m.job_id, m.spec, m) for m in members], loaded)
    except Unpackable as exc:
        note = f"trained solo, not packed: {exc}"
        for m in members:
            if m.logs is not None:
                m.logs.line("warning", note)
        if on_unpacked is not None:
            on_unpacked(f"the packed engine trained a pack's trials solo: {exc}")
        return [_solo(m, loaded) for m in members]
    finally:
        release_device_memory()


def _solo(m: PackMember, dataset: LoadedDataset | None) -> TrainResult | BaseException:
    try:
        return engine.train(m.spec, metrics=m.metrics, checkpoints=m.checkpoints,
                            control=m.control, on_progress=m.on_progress, dataset=dataset,
                            logs=m.logs, pruner=m.pruner)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 -- the member's result
        return exc

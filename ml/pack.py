"""Train several trials of one sweep as one pack.

SEQUENTIAL STAND-IN (pack-service branch): each member trains with ``ml.engine.train``
one after another. The engine branch owns this file and its vectorised version replaces
this one at merge; the interface below is the contract the worker relies on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ml.data import LoadedDataset
from ml.engine import TrainResult, train
from ml.logsink import LogSink
from ml.pruning import EpochPruner
from ml.sinks import CheckpointSink, MetricSink, RunControl
from ml.spec import JobSpec


@dataclass
class PackMember:
    job_id: str
    spec: JobSpec
    metrics: MetricSink | None = None
    checkpoints: CheckpointSink | None = None
    control: RunControl | None = None  # should_stop() True -> this member stops (canceled) alone
    logs: LogSink | None = None
    pruner: EpochPruner | None = None  # prunes only this member
    on_progress: Callable[[int, int], None] | None = None


def train_pack(
    members: Sequence[PackMember], *, dataset: LoadedDataset | None = None
) -> list[TrainResult | BaseException]:
    """Per member, what ``ml.engine.train`` returns alone, or the exception it failed with."""
    out: list[TrainResult | BaseException] = []
    for m in members:
        try:
            out.append(
                train(
                    m.spec,
                    metrics=m.metrics,
                    checkpoints=m.checkpoints,
                    control=m.control,
                    on_progress=m.on_progress,
                    dataset=dataset,
                    logs=m.logs,
                    pruner=m.pruner,
                )
            )
        except Exception as exc:  # noqa: BLE001 - one member's failure never stops the others
            out.append(exc)
    return out

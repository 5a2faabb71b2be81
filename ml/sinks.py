"""The engine's seams to the outside world.

``ml`` defines these protocols and ``worker`` implements them against the SQL
store; tests and benchmarks use the in-memory versions below. Nothing here
imports torch, so the API may import it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class MetricSink(Protocol):
    """Receives metric points. ``step`` is the global optimizer step."""

    def log(self, step: int, epoch: int, values: Mapping[str, float]) -> None: ...

    def flush(self) -> None:
        """Called at every epoch end and when training stops: make points durable."""
        ...


@dataclass(frozen=True)
class CheckpointBlob:
    """A checkpoint as bytes, so sinks need no torch.

    ``weights`` is a safetensors file of the model's state_dict alone (what a
    user downloads); ``resume`` is a safetensors file with everything needed
    to continue exactly (optimizer, RNG states as tensors; schedule,
    early-stopping and data-order state as JSON in its metadata). Never pickle.
    """

    weights: bytes
    resume: bytes


class CheckpointSink(Protocol):
    def save(
        self, blob: CheckpointBlob, step: int, epoch: int, metrics: Mapping[str, float]
    ) -> None: ...

    def load(self) -> CheckpointBlob | None:
        """The latest checkpoint of this job, or None to start fresh."""
        ...


@dataclass(frozen=True)
class StepProgress:
    """Where a run is inside its epoch: what ``train(on_step_progress=...)`` receives.

    Reported at each device read (every ``SYNC_EVERY`` steps, and at least every
    ``PROGRESS_SECONDS`` when this callback is set), never at an epoch's end (its
    metrics say that).
    """

    epoch: int  # 0-based index of the epoch in progress
    epochs: int  # epochs the spec asks for
    step: int  # global optimizer steps done
    batch: int  # steps done in this epoch
    steps_per_epoch: int
    loss: float | None  # running mean training loss of this epoch so far


class RunControl(Protocol):
    def should_stop(self) -> bool:
        """True when the run must stop now (canceled, or this attempt lost its lease).

        Called once per optimizer step: it must be cheap (read a flag).
        """
        ...


@dataclass
class MemoryMetricSink:
    """Keeps every point in memory: for tests, benchmarks and library use."""

    points: list[tuple[str, int, int, float]] = field(default_factory=list)
    flushes: int = 0

    def log(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.points.append((name, step, epoch, float(value)))

    def flush(self) -> None:
        self.flushes += 1

    def series(self, name: str) -> list[float]:
        return [v for n, _, _, v in self.points if n == name]


@dataclass
class MemoryCheckpointSink:
    saved: list[tuple[CheckpointBlob, int, int, dict[str, float]]] = field(default_factory=list)

    def save(
        self, blob: CheckpointBlob, step: int, epoch: int, metrics: Mapping[str, float]
    ) -> None:
        self.saved.append((blob, step, epoch, dict(metrics)))

    def load(self) -> CheckpointBlob | None:
        return self.saved[-1][0] if self.saved else None


class NeverStop:
    def should_stop(self) -> bool:
        return False

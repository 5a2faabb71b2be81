"""The engine's log seam: the lines a user reads to learn what a run did and why it stopped.

Like the metric sink (``ml.sinks``), ``ml`` defines the protocol and ``worker``
implements it (SQL rows, batched with the metric flush). The messages are made
here, torch-free, so their wording is one place and tests can read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

Level = Literal["info", "warning", "error"]


class LogSink(Protocol):
    def line(self, level: Level, message: str) -> None:
        """One line; cheap (buffered), called a few times per epoch at most."""
        ...


@dataclass
class MemoryLogSink:
    """Keeps every line: for tests and library use."""

    lines: list[tuple[Level, str]] = field(default_factory=list)

    def line(self, level: Level, message: str) -> None:
        self.lines.append((level, message))

    def messages(self) -> list[str]:
        return [m for _, m in self.lines]


class NullLogSink:
    def line(self, level: Level, message: str) -> None: ...


def _num(value: float) -> str:
    return f"{value:.4g}"


def started(device: str, threads: int, n_train: int, steps_per_epoch: int, epochs: int) -> str:
    return (
        f"training on {device} with {threads} CPU thread(s): {n_train} training samples, "
        f"{steps_per_epoch} steps per epoch, {epochs} epoch(s)"
    )


def resumed(step: int, epoch: int, batch: int) -> str:
    where = f"epoch {epoch + 1}" + (f", batch {batch}" if batch else "")
    return f"resumed from the checkpoint at step {step} ({where})"


_ORDER = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "grad_norm")


def epoch_summary(epoch: int, epochs: int, values: Mapping[str, float]) -> str:
    """``epoch 3/10: loss=0.1234 accuracy=0.95 ... (1.2 s, 3400 samples/s)`` (1-based)."""
    shown = [k for k in _ORDER if k in values] + sorted(
        k for k in values if k not in _ORDER and k not in ("epoch_seconds", "samples_per_second")
    )
    parts = " ".join(f"{k}={_num(values[k])}" for k in shown)
    tail = ""
    if "epoch_seconds" in values:
        tail = f" ({values['epoch_seconds']:.2f} s"
        if "samples_per_second" in values:
            tail += f", {values['samples_per_second']:.0f} samples/s"
        tail += ")"
    return f"epoch {epoch + 1}/{epochs}: {parts}{tail}"


def early_stopped(
    monitor: str, patience: int, epoch: int, best: float | None, best_epoch: int | None
) -> str:
    best_part = (
        f"; best {monitor}={_num(best)} at epoch {best_epoch + 1}"
        if best is not None and best_epoch is not None
        else ""
    )
    return (
        f"early stopping fired at epoch {epoch + 1}: {monitor} did not improve for "
        f"{patience} epoch(s){best_part}"
    )


def lr_reduced(monitor: str, patience: int, epoch: int, old: float, new: float) -> str:
    return (
        f"reduce_on_plateau: {monitor} did not improve for {patience} epoch(s); "
        f"learning rate reduced from {_num(old)} to {_num(new)} after epoch {epoch + 1}"
    )


def checkpoint_saved(step: int, epoch: int, final: bool) -> str:
    what = "final checkpoint" if final else "checkpoint"
    return f"{what} saved at step {step} (epoch {epoch + 1})"


def amp_skipped(skipped: int, steps: int, epoch: int, scale: float) -> str:
    return (
        f"AMP: {skipped} of {steps} step(s) in epoch {epoch + 1} were skipped "
        f"(fp16 gradient overflow); the loss scale is now {scale:g}"
    )

"""One epoch's training figures, summed on the host from what the steps leave on the device.

The loop (``ml.engine``, and ``ml.pack_loop`` per member) hands each step's statistics to
:class:`EpochMeter` and reads the device back only at its sync points: the losses, the
sampled gradient norms and the correct count in one copy; a non-finite loss is found
there, with the exact step it happened at (:class:`NonFiniteLoss`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ml.distributed import Shard
from ml.metrics import EpochPredictions
from ml.trainer import StepStats

__all__ = ["EpochMeter", "NonFiniteLoss"]


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
class EpochMeter:
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
    def restore(state: dict[str, float]) -> EpochMeter:
        get = state.get
        return EpochMeter(
            loss=get("loss", 0.0),
            correct=get("correct", 0.0),
            samples=int(get("samples", 0)),
            grad_norm=get("grad_norm", 0.0),
            norms=int(get("norms", 0)),
            seconds=get("seconds", 0.0),
            lr=get("lr", 0.0),
        )

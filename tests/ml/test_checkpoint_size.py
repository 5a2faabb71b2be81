"""The checkpoint size the plan implies (ml.resources.checkpoint_size, what the storage
quota is checked with at submit) is a lower bound of what torch actually stores: the
weights' and the optimizer's tensors in the safetensors files the engine writes."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from safetensors.torch import load

from ml.checks import builtin_info
from ml.engine import train
from ml.resources import checkpoint_size, estimate
from ml.sinks import CheckpointBlob
from ml.spec import BuiltinSource, JobSpec


class _Kept:
    def __init__(self) -> None:
        self.blobs: list[CheckpointBlob] = []

    def save(
        self, blob: CheckpointBlob, step: int, epoch: int, metrics: Mapping[str, float]
    ) -> None:
        self.blobs.append(blob)

    def load(self) -> CheckpointBlob | None:
        return None


def _tensor_bytes(data: bytes, prefix: str) -> int:
    return sum(t.numel() * t.element_size() for k, t in load(data).items() if k.startswith(prefix))


@pytest.mark.parametrize(
    "optimizer",
    [
        {"kind": "adam", "lr": 0.01},
        {"kind": "sgd", "lr": 0.1},
        {"kind": "sgd", "lr": 0.1, "momentum": 0.9},
        {"kind": "rmsprop", "lr": 0.01},
    ],
)
def test_the_plan_checkpoint_size_is_what_torch_stores_at_least(
    optimizer: dict[str, object],
) -> None:
    spec = JobSpec.model_validate(
        {
            "dataset": {"source": {"kind": "builtin", "name": "iris"}},
            "model": {"kind": "mlp", "hidden_units": [16, 8]},
            "optimizer": optimizer,
            "early_stopping": {"patience": 5, "restore_best_weights": True},
            "epochs": 1,
        }
    )
    assert isinstance(spec.dataset.source, BuiltinSource)
    size = checkpoint_size(spec, estimate(spec, builtin_info(spec.dataset.source)))
    kept = _Kept()
    train(spec, checkpoints=kept)
    (blob,) = kept.blobs
    assert _tensor_bytes(blob.weights, "") == size.weights  # fp32 weights, no buffers here
    assert _tensor_bytes(blob.resume, "optim.") >= size.optimizer
    assert _tensor_bytes(blob.resume, "best.") == size.best
    assert len(blob.weights) + len(blob.resume) >= size.total

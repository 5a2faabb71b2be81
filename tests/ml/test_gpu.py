"""CUDA runs (marked gpu; skipped without a GPU): device, bf16, fp16, compile, determinism."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load as st_load

from ml.engine import train
from ml.sinks import MemoryCheckpointSink, MemoryMetricSink
from ml.spec import JobSpec

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def digits(**body) -> JobSpec:
    base = {
        "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 64},
        "model": {"kind": "cnn", "channels": [16, 32]},
        "optimizer": {"kind": "adam", "lr": 0.005},
        "epochs": 8,
        "resources": {"device": "cuda"},
    }
    return JobSpec.model_validate(base | body)


def test_cuda_trains_on_the_gpu():
    metrics = MemoryMetricSink()
    result = train(digits(augmentation={"rotation_range": 10, "zoom_range": 0.1}), metrics=metrics)
    assert result.final_metrics["val_accuracy"] >= 0.95
    assert torch.cuda.max_memory_allocated() > 0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision(precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    spec = digits(resources={"device": "cuda", "precision": precision})
    assert train(spec).final_metrics["val_accuracy"] >= 0.95


def test_compile():
    spec = digits(resources={"device": "cuda", "compile": True}, epochs=5)
    assert train(spec).final_metrics["val_accuracy"] >= 0.93


def test_auto_picks_cuda_and_mlp_trains():
    spec = digits(model={"kind": "mlp"}, resources={"device": "auto"}, epochs=10)
    assert train(spec).final_metrics["val_accuracy"] >= 0.93


def test_deterministic_cuda_runs_repeat_and_resume_exactly():
    spec = digits(deterministic=True, epochs=3, regularization={"dropout": 0.2},
                  augmentation={"rotation_range": 10})  # fmt: skip
    a, b = MemoryCheckpointSink(), MemoryCheckpointSink()
    train(spec, checkpoints=a)

    class StopAfter:
        calls = 0

        def should_stop(self) -> bool:
            self.calls += 1
            return self.calls > 30

    train(spec, checkpoints=b, control=StopAfter())
    train(spec, checkpoints=b)
    wa, wb = st_load(a.saved[-1][0].weights), st_load(b.saved[-1][0].weights)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

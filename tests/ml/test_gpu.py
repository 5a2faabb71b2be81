"""CUDA runs (marked gpu; skipped without a GPU). Each asserts what happened on the device,
not only that training converged: the device and dtype used, no host synchronisation in
the step loop, exact resume in fp16 and resume across devices, out of memory mapped to its
reason, several jobs in one process (cuBLAS's workspace setting), a worker job end to end.
bench/gpu_first_run.sh runs them on a lent GPU; tests/ml/test_cuda_path.py checks the same
defects on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from safetensors.torch import load as st_load

from ml.engine import train
from ml.logsink import MemoryLogSink
from ml.resources import ResourcesExceeded
from ml.sinks import MemoryCheckpointSink
from ml.spec import JobSpec
from ml.trainer import Trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def digits(**body: Any) -> JobSpec:
    base = {
        "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 64},
        "model": {"kind": "cnn", "channels": [16, 32]},
        "optimizer": {"kind": "adam", "lr": 0.005},
        "epochs": 8,
        "resources": {"device": "cuda"},
    }
    return JobSpec.model_validate(base | body)


class StopAfter:
    def __init__(self, steps: int) -> None:
        self.calls, self.steps = 0, steps

    def should_stop(self) -> bool:
        self.calls += 1
        return self.calls > self.steps


def weights(sink: MemoryCheckpointSink) -> dict[str, torch.Tensor]:
    return st_load(sink.saved[-1][0].weights)


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """What each optimizer step saw: the batch's device, the parameters' device and dtype,
    the first layer's output dtype (autocast), and the host syncs the step made."""
    seen: list[dict[str, Any]] = []
    real = Trainer.step

    def spy(self: Trainer, xb: torch.Tensor, yb: torch.Tensor, *a: Any, **k: Any) -> Any:
        param = next(self.model.parameters())
        layers = (torch.nn.Conv2d, torch.nn.Linear)
        first = next(m for m in self.model.modules() if isinstance(m, layers))
        out: list[torch.dtype] = []
        hook = first.register_forward_hook(lambda m, i, o: out.append(o.dtype))
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = real(self, xb, yb, *a, **k)
        torch.cuda.set_sync_debug_mode("default")
        hook.remove()
        syncs = [w for w in caught if "synchroniz" in str(w.message)]
        seen.append({"batch": xb.device, "param": param.device, "param_dtype": param.dtype,
                     "out_dtype": out[0] if out else None, "syncs": len(syncs)})  # fmt: skip
        return result

    monkeypatch.setattr(Trainer, "step", spy)
    yield seen


def test_cuda_trains_on_the_gpu_with_no_host_sync_in_any_step(steps: list[dict[str, Any]]):
    logs = MemoryLogSink()
    spec = digits(augmentation={"rotation_range": 10, "zoom_range": 0.1, "fill_mode": "constant"})
    result = train(spec, logs=logs)
    assert result.final_metrics["val_accuracy"] >= 0.95
    assert {s["batch"].type for s in steps} == {"cuda"} == {s["param"].type for s in steps}
    assert {s["out_dtype"] for s in steps} == {torch.float32}
    # (the first step may meet torch's own lazy set-up; none of ours syncs, even then)
    assert [s["syncs"] for s in steps[1:]] == [0] * (len(steps) - 1), "a step synchronised"
    assert any(m.startswith("training on cuda:0 (") for m in logs.messages())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_runs_in_that_dtype_without_syncs(
    precision: str, steps: list[dict[str, Any]]
):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    spec = digits(resources={"device": "cuda", "precision": precision})
    assert train(spec).final_metrics["val_accuracy"] >= 0.95
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert {s["out_dtype"] for s in steps} == {dtype}  # autocast ran the layers in it
    assert {s["param_dtype"] for s in steps} == {torch.float32}  # master weights stay fp32
    assert [s["syncs"] for s in steps[1:]] == [0] * (len(steps) - 1)


def test_compile_trains_on_the_gpu():
    spec = digits(resources={"device": "cuda", "compile": True}, epochs=5)
    assert train(spec).final_metrics["val_accuracy"] >= 0.93


def test_auto_picks_cuda(steps: list[dict[str, Any]]):
    logs = MemoryLogSink()
    spec = digits(model={"kind": "mlp"}, resources={"device": "auto"}, epochs=10)
    assert train(spec, logs=logs).final_metrics["val_accuracy"] >= 0.93
    assert {s["param"].type for s in steps} == {"cuda"}
    assert any(m.startswith("training on cuda:") for m in logs.messages())


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_deterministic_cuda_runs_repeat_and_resume_exactly(precision: str):
    spec = digits(deterministic=True, epochs=3,
                  regularization={"dropout": 0.2, "weight_decay": 1e-3},
                  augmentation={"rotation_range": 10},
                  optimizer={"kind": "sgd", "lr": 0.05, "momentum": 0.9},
                  resources={"device": "cuda", "precision": precision})  # fmt: skip
    a, b = MemoryCheckpointSink(), MemoryCheckpointSink()
    train(spec, checkpoints=a)
    train(spec, checkpoints=b, control=StopAfter(30))  # mid-epoch
    train(spec, checkpoints=b)
    wa, wb = weights(a), weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert "rng.cuda" in st_load(b.saved[-1][0].resume)  # this device's random state


def test_resume_across_devices_keeps_this_devices_optimizer_and_says_it_is_not_exact():
    """A device: auto job stopped on a CPU worker and retried on a GPU one, fp16 SGD."""
    body = {"epochs": 2, "optimizer": {"kind": "sgd", "lr": 0.05, "momentum": 0.9}}
    sink, logs = MemoryCheckpointSink(), MemoryLogSink()
    train(digits(**body, resources={"device": "cpu", "precision": "fp16"}), checkpoints=sink,
          control=StopAfter(10))  # fmt: skip
    result = train(digits(**body, resources={"device": "cuda", "precision": "fp16"}),
                   checkpoints=sink, logs=logs)  # fmt: skip
    assert result.status_reason == "completed" and result.epochs_completed == 2
    assert any("saved on cpu" in m and "not bit-for-bit" in m for m in logs.messages())


def test_out_of_memory_is_resources_exceeded_and_the_next_job_has_the_memory():
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, (2 << 30) / total))  # 2 GiB
    try:
        huge = {"dataset": {"source": {"kind": "builtin", "name": "synthetic",
                                       "synthetic": {"n_samples": 4096, "n_features": 64}},
                            "batch_size": 4096},
                "model": {"kind": "mlp", "hidden_units": [16384, 16384, 16384]},
                "epochs": 1, "resources": {"device": "cuda"}}  # fmt: skip
        with pytest.raises(ResourcesExceeded, match="out of memory on cuda:0") as err:
            train(JobSpec.model_validate(huge))
        assert "the plan estimated" in str(err.value)
        assert torch.cuda.memory_allocated() < (64 << 20)  # the failed job's tensors are gone
        assert torch.cuda.memory_reserved() < (64 << 20)  # and handed back (empty_cache)
        assert train(digits(epochs=1)).epochs_completed == 1
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


def test_several_jobs_in_one_worker_process_deterministic_after_a_plain_cuda_job():
    """Finding 1: in a process that imported the worker (as `trainforge worker` does), a
    deterministic job after a non-deterministic CUDA job runs, and repeats exactly."""
    probe = """
import worker, torch
from ml.engine import train
from ml.spec import JobSpec
def spec(det):
    return JobSpec.model_validate({"dataset": {"source": {"kind": "builtin", "name": "digits"}},
        "model": {"kind": "mlp"}, "epochs": 1, "deterministic": det,
        "resources": {"device": "cuda"}})
train(spec(False))
a = train(spec(True)).final_metrics["loss"]
b = train(spec(True)).final_metrics["loss"]
print("same" if a == b else f"differ {a} {b}")
"""
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("same")


def test_a_worker_job_runs_end_to_end_on_cuda(settings: Any) -> None:
    pytest.importorskip("sqlalchemy")
    from api.db.session import session_factory
    from api.joblogs.models import JobLogLine
    from api.ledger.models import Job
    from tests.worker.helpers import insert_job
    from worker.runner import run_job

    spec = {"dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 64},
            "model": {"kind": "cnn", "channels": [8, 16]}, "epochs": 2,
            "resources": {"device": "cuda", "precision": "bf16"
                          if torch.cuda.is_bf16_supported() else "fp16"}}  # fmt: skip
    with session_factory(settings.resolved_database_url)() as s:
        job_id = insert_job(s, spec)
        s.commit()
    run_job(job_id, settings)
    with session_factory(settings.resolved_database_url)() as s:
        job = s.get(Job, job_id)
        assert job is not None and (job.status, job.status_reason) == ("succeeded", "completed")
        lines = [r.message for r in s.query(JobLogLine).filter_by(job_id=job_id)]
    assert any("training on cuda:0 (" in m for m in lines)

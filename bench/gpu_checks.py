"""The first GPU run's measured checks (bench/gpu_first_run.sh runs this; prints JSON lines).

- ``resume``: a deterministic fp16 run stopped mid-epoch and resumed ends with weights
  equal to the uninterrupted run's (and the same for fp32);
- ``syncs``: host synchronisations per optimizer step (torch.cuda.set_sync_debug_mode),
  with and without augmentation, fp32 and fp16; the target is 0 after the first step
  (which may meet torch's own lazy set-up);
- ``oom``: a job that cannot fit (the process capped to 2 GiB) ends ResourcesExceeded
  with its hint, its memory handed back, and the next job runs.

    python bench/gpu_checks.py [--device cuda] [--only resume,syncs,oom]

On a machine without CUDA (``--device cpu``) ``resume`` runs on the CPU, ``syncs`` and
``oom`` say they were skipped: the script's CPU-side parts, checked before a GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
from safetensors.torch import load as st_load

import worker  # noqa: F401  (CUBLAS_WORKSPACE_CONFIG before CUDA starts, as in a worker)
from ml.engine import train
from ml.resources import ResourcesExceeded
from ml.sinks import MemoryCheckpointSink
from ml.spec import JobSpec
from ml.trainer import Trainer


def emit(check: str, **fields: Any) -> None:
    print(json.dumps({"check": check} | fields), flush=True)


def digits(device: str, **body: Any) -> JobSpec:
    base = {
        "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 64},
        "model": {"kind": "cnn", "channels": [16, 32]},
        "optimizer": {"kind": "adam", "lr": 0.005},
        "epochs": 2,
        "resources": {"device": device},
    }
    return JobSpec.model_validate(base | body)


class StopAfter:
    def __init__(self, steps: int) -> None:
        self.calls, self.steps = 0, steps

    def should_stop(self) -> bool:
        self.calls += 1
        return self.calls > self.steps


def check_resume(device: str) -> None:
    precisions = ["fp32", "fp16"]
    for precision in precisions:
        spec = digits(device, deterministic=True, epochs=3,
                      regularization={"dropout": 0.2, "weight_decay": 1e-3},
                      augmentation={"rotation_range": 10, "width_shift_range": 0.1},
                      optimizer={"kind": "sgd", "lr": 0.05, "momentum": 0.9},
                      resources={"device": device, "precision": precision})  # fmt: skip
        a, b = MemoryCheckpointSink(), MemoryCheckpointSink()
        started = time.perf_counter()
        train(spec, checkpoints=a)
        train(spec, checkpoints=b, control=StopAfter(30))
        train(spec, checkpoints=b)
        wa, wb = st_load(a.saved[-1][0].weights), st_load(b.saved[-1][0].weights)
        differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
        emit("resume", device=device, precision=precision, exact=not differ,
             differing_tensors=differ, seconds=round(time.perf_counter() - started, 2))  # fmt: skip


def check_syncs(device: str) -> None:
    if device != "cuda":
        emit("syncs", skipped="needs CUDA (torch.cuda.set_sync_debug_mode)")
        return
    counts: list[int] = []
    real = Trainer.step

    def counting(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                return real(self, *args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")
            counts.append(sum("synchroniz" in str(w.message) for w in caught))

    Trainer.step = counting  # type: ignore[method-assign]
    try:
        for augmented in (False, True):
            for precision in ("fp32", "fp16"):
                counts.clear()
                body: dict[str, Any] = {"resources": {"device": device, "precision": precision},
                                        "epochs": 1}  # fmt: skip
                if augmented:
                    body["augmentation"] = {"rotation_range": 10, "zoom_range": 0.1,
                                            "fill_mode": "constant"}  # fmt: skip
                train(digits(device, **body))
                later = counts[1:] or [0]  # the first step may meet torch's lazy set-up
                emit("syncs", augmentation=augmented, precision=precision, steps=len(counts),
                     syncs_per_step=sum(counts) / max(len(counts), 1), first_step=counts[0],
                     max_after_first=max(later))  # fmt: skip
    finally:
        Trainer.step = real  # type: ignore[method-assign]


def check_oom(device: str) -> None:
    if device != "cuda":
        emit("oom", skipped="needs CUDA (tests/ml/test_cuda_path.py maps a stand-in OOM on CPU)")
        return
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, (2 << 30) / total))
    huge = JobSpec.model_validate(
        {
            "dataset": {
                "source": {
                    "kind": "builtin",
                    "name": "synthetic",
                    "synthetic": {"n_samples": 4096, "n_features": 64},
                },
                "batch_size": 4096,
            },
            "model": {"kind": "mlp", "hidden_units": [16384, 16384, 16384]},
            "epochs": 1,
            "resources": {"device": "cuda"},
        }
    )
    try:
        try:
            train(huge)
            emit("oom", mapped=False, error="the job fit in 2 GiB: no OOM to map")
        except ResourcesExceeded as exc:
            emit("oom", mapped=True, message=str(exc),
                 allocated_after=torch.cuda.memory_allocated(),
                 reserved_after=torch.cuda.memory_reserved())  # fmt: skip
        next_job = train(digits("cuda", epochs=1))
        emit("oom", next_job_epochs=next_job.epochs_completed)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", choices=["cpu", "cuda"], default=default)
    parser.add_argument("--only", default="resume,syncs,oom")
    args = parser.parse_args()
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    emit("environment", torch=torch.__version__, device=name,
         cublas=os.environ.get("CUBLAS_WORKSPACE_CONFIG"))  # fmt: skip
    checks = {"resume": check_resume, "syncs": check_syncs, "oom": check_oom}
    for check in args.only.split(","):
        checks[check](args.device)


if __name__ == "__main__":
    main()

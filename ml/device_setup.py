"""Where a run trains and under which process-wide flags: the device it resolves to, the
checks a CUDA or compiled run needs before its first kernel, and the determinism and
precision settings held for the run's duration (``ml.engine`` and ``ml.pack_build``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ml.architecture import TrainError
from ml.spec import JobSpec, ResourcesSpec


def resolve_device(resources: ResourcesSpec) -> torch.device:
    if resources.device == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        # The process's current device, by index: what CUDA_VISIBLE_DEVICES gave this worker
        # (the log and the checkpoint name it `cuda:0`, not a bare `cuda`).
        return torch.device("cuda", torch.cuda.current_device())
    if resources.device == "cuda":
        raise TrainError(
            "resources.device is 'cuda' but this worker has no usable CUDA GPU; "
            "use 'auto' or 'cpu', or submit to a GPU queue"
        )
    return torch.device("cpu")


# What torch.use_deterministic_algorithms accepts for cuBLAS (see the worker package).
DETERMINISTIC_CUBLAS = (":4096:8", ":16:8")


def check_cublas_config(device: torch.device, deterministic: bool) -> None:
    """A deterministic CUDA run needs CUBLAS_WORKSPACE_CONFIG from before the process's first
    cuBLAS call, which latches it: set here only while CUDA is untouched (a library caller's
    first run); later, a run that would fail at its first matmul is refused with the reason."""
    if not deterministic or device.type != "cuda":
        return
    value = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if value in DETERMINISTIC_CUBLAS:
        return
    if value is None and not torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = DETERMINISTIC_CUBLAS[0]
        return
    raise TrainError(
        f"deterministic: true on CUDA needs CUBLAS_WORKSPACE_CONFIG=:4096:8 (or :16:8) in the "
        f"process's environment before it first uses CUDA; it is {value!r} here. "
        "`trainforge worker` sets it at start; set it yourself when you call ml.train in a "
        "process of your own, or submit with deterministic: false."
    )


def check_compiler(spec: JobSpec, device: torch.device) -> None:
    """``compile: true`` builds code at run time: TorchInductor's CPU kernels need a C++
    compiler, Triton's CUDA launcher a C one. Without one the first step would crash deep
    inside torch; the job is refused up front instead, saying what is missing."""
    if not spec.resources.compile:
        return
    names = ("c++", "g++", "clang++") if device.type == "cpu" else ("cc", "gcc", "clang")
    override = os.environ.get("CXX" if device.type == "cpu" else "CC")
    if any(shutil.which(n) for n in ((override,) if override else ()) + names):
        return
    kind = "C++" if device.type == "cpu" else "C"
    raise TrainError(
        f"resources.compile needs a {kind} compiler on the worker ({', '.join(names)}) to build "
        f"the compiled kernels for {device.type}, and this worker has none: submit with "
        "resources.compile false, or install one on the worker (the Docker image has gcc/g++)"
    )


@contextmanager
def global_settings(deterministic: bool) -> Iterator[None]:
    """Determinism and precision flags for this run only; the process's previous ones come
    back after.

    A documented choice (docs/gpu.md): fp32 is IEEE fp32 on a GPU too, for matmuls and
    convolutions alike (PyTorch's default runs cuDNN convolutions in TF32 on Ampere and
    later, and matmuls not): results stay within fp32 tolerance of the CPU and of the
    references; ``resources.precision`` bf16/fp16 is the fast path. ``cudnn.benchmark``
    stays off (PyTorch's default): each new shape (the last partial batch, validation
    batches) would pay for autotuning trials, and the choice can differ run to run."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv  # type: ignore[attr-defined]
    prev = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        matmul.fp32_precision,
        conv.fp32_precision,
    )
    matmul.fp32_precision = conv.fp32_precision = "ieee"
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.benchmark = prev[2]
        matmul.fp32_precision, conv.fp32_precision = prev[3], prev[4]


def release_device_memory() -> None:
    """Hand the CUDA caching allocator's unused blocks back to the driver (a no-op where
    CUDA was never initialised): the next job of this worker process, or another process
    on the GPU, can use them."""
    torch.cuda.empty_cache()

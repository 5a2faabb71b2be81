"""The CUDA path's defects of issue 30, checked on this CPU machine: by the same behaviour on
CPU where it reproduces there, with ``torch.cuda`` stood in for otherwise (as the worker's
gauge test does). tests/ml/test_gpu.py checks the same on a real GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ml import optim as optim_module
from ml.augment import augment
from ml.checkpoint import restore_cuda_rng
from ml.data import (
    DeviceData,
    _fits,
    _Staging,
    fit_normalization,
    load_dataset,
    normalized_rows,
    prepare,
)
from ml.device_setup import check_compiler, check_cublas_config, resolve_device
from ml.engine import TrainError, train
from ml.resources import ResourcesExceeded
from ml.sinks import MemoryCheckpointSink
from ml.spec import AugmentationSpec, JobSpec
from ml.trainer import Trainer

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


def iris(**body: object) -> JobSpec:
    base = {"dataset": {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 16},
            "model": {"kind": "mlp", "hidden_units": [16]}, "epochs": 2}  # fmt: skip
    return JobSpec.model_validate(base | body)


# -- 1. CUBLAS_WORKSPACE_CONFIG ---------------------------------------------------------


def test_a_deterministic_cuda_run_after_cuda_started_without_the_cublas_setting_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """cuBLAS latched the setting at the process's first call: a job would fail at its first
    matmul (an "Internal error"); it is refused up front, saying what to set."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(TrainError, match="CUBLAS_WORKSPACE_CONFIG=:4096:8"):
        check_cublas_config(CUDA, deterministic=True)
    check_cublas_config(CUDA, deterministic=False)  # nothing asked of cuBLAS
    check_cublas_config(CPU, deterministic=True)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    check_cublas_config(CUDA, deterministic=True)


def test_a_library_callers_first_cuda_run_still_gets_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    check_cublas_config(CUDA, deterministic=True)
    import os

    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_the_test_session_carries_the_cublas_setting() -> None:
    import os

    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") in (":4096:8", ":16:8")


# -- 5. out of memory -------------------------------------------------------------------


def test_out_of_memory_is_resources_exceeded_with_a_hint_and_frees_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emptied: list[int] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))

    def oom(self: Trainer, *args: object, **kwargs: object) -> object:
        raise torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79 GiB"
        )

    monkeypatch.setattr(Trainer, "step", oom)
    with pytest.raises(ResourcesExceeded) as err:
        train(iris())
    message = str(err.value)
    assert "out of memory on cpu" in message and "Tried to allocate 2.00 GiB" in message
    assert "dataset.batch_size (now 16)" in message and "the plan estimated" in message
    assert emptied  # the cached blocks went back after the failed job
    assert not isinstance(err.value.__cause__, torch.OutOfMemoryError)  # frames released


def test_the_cache_is_emptied_after_every_job(monkeypatch: pytest.MonkeyPatch) -> None:
    emptied: list[int] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    train(iris(epochs=1))
    assert emptied == [1]


def test_cached_but_unused_device_memory_counts_as_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (100, 1000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 300)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 100)
    # free to the driver 100, held by the allocator but unused 200: half of 300 may be data
    assert _fits(CUDA, 150) and not _fits(CUDA, 151)


# -- 4. resume on another device --------------------------------------------------------


class StopAfter:
    def __init__(self, steps: int) -> None:
        self.calls, self.steps = 0, steps

    def should_stop(self) -> bool:
        self.calls += 1
        return self.calls > self.steps


def test_a_checkpoint_saved_with_other_kernel_flags_resumes_with_this_devices_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A device with no fused Adam saved foreach=True; here Adam is fused, and GradScaler
    (set up for the fused step when the optimizer was built) hands it grad_scale: the
    checkpoint's flags would break every step."""
    spec = iris(epochs=3, optimizer={"kind": "adam", "lr": 0.01},
                resources={"device": "cpu", "precision": "fp16"})  # fmt: skip
    sink = MemoryCheckpointSink()
    with monkeypatch.context() as m:
        m.setattr(optim_module, "_FUSED", {"cpu": set()})
        train(spec, checkpoints=sink, control=StopAfter(10))
    assert optim_module._FUSED["cpu"] == {"adam", "adamw", "adagrad"}
    result = train(spec, checkpoints=sink)
    assert result.status_reason == "completed" and result.epochs_completed == 3


def test_cuda_rng_of_an_old_checkpoint_is_picked_by_number_not_by_string(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    states = {f"rng.cuda.{i}": torch.full((4,), i, dtype=torch.uint8) for i in range(12)}
    restored: list[tuple[torch.Tensor, torch.device]] = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 12)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, d: restored.append((s, d)))
    notes: list[str] = []
    restore_cuda_rng(states, torch.device("cuda", 10), "cuda", notes)
    assert [int(s[0]) for s, _ in restored] == [10] and restored[0][1] == torch.device("cuda", 10)
    assert notes == []


def test_a_resume_that_cannot_continue_the_random_stream_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, d: pytest.fail("nothing to set"))
    notes: list[str] = []
    restore_cuda_rng({}, CUDA, "cpu", notes)  # CPU checkpoint, GPU worker
    restore_cuda_rng({"rng.cuda.0": torch.zeros(4), "rng.cuda.1": torch.zeros(4)}, CUDA, None,
                     notes)  # fmt: skip
    assert len(notes) == 2 and all("not bit-for-bit" in n for n in notes)
    assert "saved on cpu" in notes[0] and "cuda:0" in notes[0]


def test_the_current_cuda_device_is_named_by_its_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert str(resolve_device(iris(resources={"device": "auto"}).resources)) == "cuda:0"


# -- 3. augmentation builds no tensors from host data per step ----------------------------


def test_an_augmented_step_builds_no_tensor_from_host_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a GPU each torch.tensor(..., device=cuda) is a host copy and a sync per step."""
    spec = AugmentationSpec.model_validate(
        {"rotation_range": 20, "zoom_range": 0.2, "fill_mode": "constant", "cval": 0.5}
    )
    x = torch.rand(4, 1, 8, 8)
    augment(x, spec)  # the first step may build what later ones reuse
    built: list[object] = []
    real = torch.tensor

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        built.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "tensor", counting)
    out = augment(x, spec)
    augment(x, spec)
    assert built == []
    assert out.shape == x.shape and (out == 0.5).any()  # constant fill still writes cval


# -- 6. host memory for data that stays on the host -----------------------------------------


def test_rows_are_normalized_in_chunks_exactly_as_the_whole_array_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("ml.data._CHUNK_VALUES", 10)  # many chunks
    rng = np.random.default_rng(0)
    x = rng.normal(3, 2, (50, 1, 3, 3)).astype(np.float32)
    index = rng.permutation(50)[:37]
    shift, scale = (
        x.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64),
        np.full((1, 1, 1, 1), 1.7),
    )
    expected = ((x - shift) / scale).astype(np.float32)[index]
    got = normalized_rows(x, index, (shift, scale))
    assert got.dtype == torch.float32 and np.array_equal(got.numpy(), expected)
    assert np.array_equal(normalized_rows(x, index, None).numpy(), x[index])


@pytest.mark.parametrize("kind", ["standard", "minmax", "minmax_symmetric"])
@pytest.mark.parametrize("shape", [(20000, 10), (2000, 3, 8, 8)])
def test_normalization_statistics_are_fitted_from_the_training_rows_without_copies(
    monkeypatch: pytest.MonkeyPatch, kind: str, shape: tuple[int, ...]
) -> None:
    """The statistics equal those of a float64 copy of x[train] (the old way: 1.6x the data
    set in float64 on top of a 0.8x copy of the rows), computed chunk by chunk instead: the
    peak of what they allocate is a small fraction of the data (defect 6)."""
    import tracemalloc

    rng = np.random.default_rng(1)
    x = rng.normal(3, 2, shape).astype(np.float32)
    rows = rng.permutation(shape[0])[: int(shape[0] * 0.8)]
    whole = x[rows].astype(np.float64)
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    lo, hi = whole.min(axis=axes, keepdims=True), whole.max(axis=axes, keepdims=True)
    expected = {
        "standard": (whole.mean(axis=axes, keepdims=True), whole.std(axis=axes, keepdims=True)),
        "minmax": (lo, hi - lo),
        "minmax_symmetric": ((hi + lo) / 2, (hi - lo) / 2),
    }[kind]
    monkeypatch.setattr("ml.data._CHUNK_VALUES", max(1, x.size // 50))  # ~50 chunks
    tracemalloc.start()
    stats = fit_normalization(x, kind, rows)  # type: ignore[arg-type]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert stats is not None
    np.testing.assert_allclose(stats[0], expected[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats[1], expected[1], rtol=1e-12)
    assert peak < x.nbytes / 4, (peak, x.nbytes)


def test_shuffled_host_batches_are_gathered_into_two_reused_buffers() -> None:
    x, y = torch.arange(40.0).reshape(20, 2), torch.arange(20)
    staging = _Staging(x, y, batch_size=6)
    order = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    seen = []
    for lo in range(0, 20, 6):
        xb, yb = staging.gather(order[lo : lo + 6])
        assert torch.equal(xb, x[order[lo : lo + 6]]) and torch.equal(yb, y[order[lo : lo + 6]])
        seen.append(xb.data_ptr())
        staging.copied_out()
    assert seen[0] == seen[2] and seen[1] == seen[3] and seen[0] != seen[1]


def test_host_resident_data_is_batched_through_the_staging_buffers() -> None:
    """Data that did not fit the device (device 'meta' stands in for it here)."""
    spec = iris()
    data = prepare(spec, load_dataset(spec), CPU)
    host = DeviceData(data.x_train, data.y_train, None, None, data.info, torch.device("meta"))
    from ml.data import train_batches

    shapes = [tuple(xb.shape) for xb, _ in train_batches(host, 16, True, 0, 0)]
    assert shapes[0] == (16, 4) and all(s[0] <= 16 for s in shapes)
    assert sum(s[0] for s in shapes) == data.n_train


# -- 8. fp16 steps the scaler skips --------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_step_the_fp16_scaler_skips_does_not_decay_the_weights(optimizer: str) -> None:
    spec = iris(optimizer={"kind": optimizer, "lr": 0.1},
                regularization={"weight_decay": 0.5},
                resources={"device": "cpu", "precision": "fp16"})  # fmt: skip
    torch.manual_seed(0)
    data = prepare(spec, load_dataset(spec), CPU)
    trainer = Trainer(spec, data, CPU)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    xb, yb = data.x_train[:16].clone(), data.y_train[:16]
    xb[0, 0] = float("inf")  # inf/NaN gradients: the scaler skips the step
    trainer.step(xb, yb, 0.1)
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    skipped = trainer.take_skipped_steps()
    assert skipped is not None and skipped[0] == 1
    trainer.step(data.x_train[:16], yb, 0.1)  # a finite step decays (and updates) again
    assert not torch.equal(before["1.weight"], trainer.model.state_dict()["1.weight"])
    skipped = trainer.take_skipped_steps()
    assert skipped is not None and skipped[0] == 0


def test_fp32_runs_without_tf32_and_the_process_flags_come_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The documented choice: IEEE fp32 for matmuls and cuDNN convolutions during a run
    (PyTorch's default lets cuDNN use TF32); the process's own settings return after."""
    seen: list[tuple[str, str]] = []
    real_step = Trainer.step

    def spy(self: Trainer, *args: object, **kwargs: object) -> object:
        seen.append((torch.backends.cuda.matmul.fp32_precision,
                     torch.backends.cudnn.conv.fp32_precision))  # fmt: skip
        return real_step(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Trainer, "step", spy)
    conv = torch.backends.cudnn.conv
    before, conv.fp32_precision = conv.fp32_precision, "tf32"
    try:
        train(iris(epochs=1))
        assert conv.fp32_precision == "tf32"
    finally:
        conv.fp32_precision = before
    assert seen and set(seen) == {("ieee", "ieee")}


# -- 2. compile: true without a compiler ---------------------------------------------------


def test_compile_without_a_compiler_is_refused_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inductor (CPU) and Triton (CUDA) build code at run time: no compiler, a clear refusal
    instead of a crash deep inside torch at the first step."""
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(TrainError, match=r"resources.compile needs a C\+\+ compiler"):
        train(iris(resources={"device": "cpu", "compile": True}))

    with pytest.raises(TrainError, match=r"needs a C compiler .*resources.compile false"):
        check_compiler(iris(resources={"compile": True}), CUDA)
    check_compiler(iris(), CUDA)  # no compile, no compiler needed
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}" if name == "gcc" else None)
    check_compiler(iris(resources={"compile": True}), CUDA)

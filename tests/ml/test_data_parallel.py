"""resources.devices: 2 CPU processes (gloo, DDP) train the series of 1 (issue 27).

The reference is the single-process run of the same spec. Tolerance: float
re-association only (DDP sums the ranks' gradient shares in another order than one
process's batch reduction). Measured on this machine: the largest relative
difference over every per-epoch loss, val_loss and grad_norm of these cases is
about 1e-7 (2e-7 with batch norm over the global batch); the bound is RTOL = 2e-5,
100x that, and far below what any real change (one mask, one row, one statistic)
moves (the per-replica batch-norm case is 2e-3 away).

Every case holds a last partial batch (1437 training rows, batches of 256: the last
has 157, rank 0 takes 128 and rank 1 29). Each 2-process run costs 1-3 s here.
"""

from __future__ import annotations

from typing import Any

import pytest

from ml.engine import train
from ml.logsink import MemoryLogSink
from ml.sinks import MemoryCheckpointSink, MemoryMetricSink
from ml.spec import JobSpec

pytestmark = pytest.mark.slow

RTOL = 2e-5
SERIES = ("loss", "val_loss", "accuracy", "grad_norm")


def job(devices: int, batch_size: int = 256, **parts: Any) -> JobSpec:
    dataset = {"source": {"kind": "builtin", "name": "digits"}, "batch_size": batch_size}
    return JobSpec.model_validate(
        {"dataset": dataset, "epochs": 2, "seed": 5, **parts,
         "resources": {"device": "cpu", "devices": devices, **parts.pop("resources", {})}}
    )  # fmt: skip


def series(spec: JobSpec, **kwargs: Any) -> dict[str, list[float]]:
    metrics = MemoryMetricSink()
    train(spec, metrics=metrics, **kwargs)
    return {name: metrics.series(name) for name in SERIES}


def assert_same(one: dict[str, list[float]], two: dict[str, list[float]]) -> None:
    for name in SERIES:
        assert len(one[name]) == len(two[name]) > 0, name
        assert two[name] == pytest.approx(one[name], rel=RTOL), name


# SGD with momentum, clipping on the global gradient, l1 and l2, dropout: the resume test's.
SGD_CLIP_L1_L2_DROPOUT: dict[str, Any] = {
    "optimizer": {"kind": "sgd", "lr": 0.05, "momentum": 0.9},
    "clipping": {"kind": "global_norm", "max_norm": 0.5},
    "regularization": {"l1": 1e-4, "l2": 1e-3, "dropout": 0.3},
}
CASES: dict[str, dict[str, Any]] = {
    "adam_dropout": {"optimizer": {"kind": "adam", "lr": 3e-3}, "regularization": {"dropout": 0.2}},
    # Convolutions, batch norm over the global batch, augmentation drawn for the global batch.
    # SGD: a convolution's bias before batch norm has a gradient of exactly 0 in exact
    # arithmetic, rounding noise in practice, which Adam would scale up to full steps (the
    # eval-mode running mean follows it): 1e-5 apart on 1 vs 2 devices, and run to run.
    "cnn_sync_batch_norm_augmented": {
        "model": {"kind": "cnn", "channels": [4, 8]},
        "optimizer": {"kind": "sgd", "lr": 0.05, "momentum": 0.9},
        "augmentation": {"rotation_range": 10, "width_shift_range": 0.1},
        "resources": {"sync_batch_norm": True},
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_train_the_single_process_series(case: str) -> None:
    assert_same(series(job(1, **CASES[case])), series(job(2, **CASES[case])))


def test_per_replica_batch_norm_is_not_the_single_process_run() -> None:
    """The default (sync_batch_norm false): each replica normalizes with its own slice's
    statistics, as DDP does: the run trains, but its series depends on the device count."""
    cnn: dict[str, Any] = {
        "model": {"kind": "cnn", "channels": [4, 8]},
        "optimizer": {"kind": "sgd", "lr": 0.05},
    }
    one, two = series(job(1, **cnn)), series(job(2, **cnn))
    apart = max(abs(b - a) / abs(a) for n in SERIES for a, b in zip(one[n], two[n], strict=True))
    assert apart > 20 * RTOL  # measured: 2e-3 (grad_norm), 6e-5 (loss)
    assert all(0 < v < 5 for v in two["loss"] + two["val_loss"])


def test_checkpoints_resume_exactly_on_another_device_count() -> None:
    """SGD with momentum, clipping on the global (all-reduced) gradient, l1 and l2, dropout
    masks drawn for the whole batch and sliced: 2 processes train the single-process series,
    checkpoint once per epoch (rank 0 alone writes), and a checkpoint of epoch 1 resumes
    on the other device count (2 -> 1, 1 -> 2) into epochs 2 and 3 of that series."""
    parts = SGD_CLIP_L1_L2_DROPOUT | {"epochs": 3}
    on_one, on_two, logs = MemoryCheckpointSink(), MemoryCheckpointSink(), MemoryLogSink()
    reference = series(job(1, **parts), checkpoints=on_one)
    assert_same(reference, series(job(2, **parts), checkpoints=on_two, logs=logs))
    assert [epoch for _, _, epoch, _ in on_two.saved] == [0, 1, 2]  # once per save, not per rank
    later = {n: v[1:] for n, v in reference.items()}
    for first, then in ((on_two, 1), (on_one, 2)):
        assert_same(
            later, series(job(then, **parts), checkpoints=MemoryCheckpointSink(first.saved[:1]))
        )
    messages = logs.messages()
    assert any(m.startswith("[rank 1] rank 1 of 2 on cpu") for m in messages)
    assert any(m.startswith("[rank 0] epoch 1/3") for m in messages)
    assert not any(m.startswith("[rank 1] epoch") for m in messages)


def test_cancel_stops_every_rank_at_the_same_step_and_saves_once() -> None:
    """The parent's control says stop (a cancel): both ranks agree on the next step, rank
    0 saves the checkpoint, and no rank process is left when ``train`` returns. The time
    from the first ``should_stop() -> True`` to the return is printed (measured here:
    0.1-0.3 s, on a loaded machine)."""
    import multiprocessing
    import time

    class CancelAfterFirstProgress:
        def __init__(self) -> None:
            self.progressed, self.since = False, 0.0

        def should_stop(self) -> bool:
            if self.progressed and not self.since:
                self.since = time.monotonic()
            return self.progressed

    control, saved = CancelAfterFirstProgress(), MemoryCheckpointSink()

    def progressed(_: object) -> None:
        control.progressed = True

    spec = job(2, batch_size=32, epochs=50)
    result = train(spec, control=control, checkpoints=saved, on_step_progress=progressed)
    print(f"canceled: train returned {time.monotonic() - control.since:.2f} s after the stop")
    assert result.status_reason == "canceled" and 0 < result.step < 50 * 45
    assert multiprocessing.active_children() == []
    assert [step for _, step, _, _ in saved.saved] == [result.step]  # saved once, as it stopped

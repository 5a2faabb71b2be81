"""The engine tells its story through ml.logsink: start, epochs, plateau, early stop."""

from __future__ import annotations

import pytest
import torch

from ml.engine import train
from ml.logsink import MemoryLogSink
from ml.sinks import MemoryCheckpointSink
from ml.spec import JobSpec

# min_delta 10 on a loss below 10: only the first epoch counts as an improvement, so the
# plateau (patience 1) reduces the rate after epochs 2, 3 and 4, and early stopping (patience 3)
# fires at epoch 4.
PLATEAU_AND_EARLY_STOP = {
    "dataset": {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 32},
    "schedule": {"kind": "reduce_on_plateau", "patience": 1, "min_delta": 10, "factor": 0.5},
    "early_stopping": {"patience": 3, "min_delta": 10},
    "epochs": 20,
}


def test_a_run_logs_start_epochs_plateau_early_stop_and_checkpoints_in_order() -> None:
    logs, ckpts = MemoryLogSink(), MemoryCheckpointSink()
    result = train(JobSpec.model_validate(PLATEAU_AND_EARLY_STOP), logs=logs, checkpoints=ckpts)
    assert result.status_reason == "early_stopped"
    lines = logs.messages()
    assert lines[0].startswith("training on cpu with ") and " CPU thread(s): " in lines[0]
    epochs = [m for m in lines if m.startswith("epoch ")]
    assert len(epochs) == result.epochs_completed == 4
    assert "loss=" in epochs[0] and "val_loss=" in epochs[0] and "samples/s" in epochs[0]
    reduced = [i for i, m in enumerate(lines) if m.startswith("reduce_on_plateau:")]
    stopped = [i for i, m in enumerate(lines) if m.startswith("early stopping fired")]
    assert len(reduced) == 3 and len(stopped) == 1
    assert "from 0.001 to 0.0005 after epoch 2" in lines[reduced[0]]
    assert reduced[-1] < stopped[0]
    assert "at epoch 4" in lines[stopped[0]]
    assert lines[-1] == f"final checkpoint saved at step {result.step} (epoch 4)"
    assert sum(m.startswith("checkpoint saved") for m in lines) == 3  # every epoch but the last


def test_a_resumed_run_says_where_it_resumed() -> None:
    spec = JobSpec.model_validate({**PLATEAU_AND_EARLY_STOP, "epochs": 2, "early_stopping": None})
    ckpts = MemoryCheckpointSink()
    first = train(spec, checkpoints=ckpts)
    logs = MemoryLogSink()
    longer = JobSpec.model_validate({**spec.model_dump(), "epochs": 3})
    train(longer, checkpoints=ckpts, logs=logs)
    assert logs.messages()[1] == f"resumed from the checkpoint at step {first.step} (epoch 3)"


def test_fp16_steps_the_loss_scaler_skipped_are_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    # A loss scale far too large: every backward overflows fp16 and the scaler skips the
    # step (halving the scale), as it does at the start of many real fp16 runs.
    real = torch.amp.GradScaler
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device: real(device, init_scale=2.0**100))
    spec = {
        "dataset": {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 32},
        "epochs": 2,
        "resources": {"device": "cpu", "precision": "fp16"},
    }
    logs = MemoryLogSink()
    train(JobSpec.model_validate(spec), logs=logs)
    warnings = [m for level, m in logs.lines if level == "warning"]
    assert warnings == [
        "AMP: 4 of 4 step(s) in epoch 1 were skipped (fp16 gradient overflow); "
        f"the loss scale is now {2.0**96:g}",
        "AMP: 4 of 4 step(s) in epoch 2 were skipped (fp16 gradient overflow); "
        f"the loss scale is now {2.0**92:g}",
    ]


def test_fp32_runs_say_nothing_about_amp() -> None:
    logs = MemoryLogSink()
    spec = {**PLATEAU_AND_EARLY_STOP, "epochs": 1, "early_stopping": None}
    train(JobSpec.model_validate(spec), logs=logs)
    assert not any(m.startswith("AMP") for m in logs.messages())

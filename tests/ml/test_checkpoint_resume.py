"""Checkpoints: safetensors only, and a resumed run is bit-for-bit the uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load as st_load

from ml.checkpoint import FORMAT
from ml.engine import TrainError, train
from ml.sinks import MemoryCheckpointSink, MemoryMetricSink
from ml.spec import JobSpec

TIMING = ("epoch_seconds", "samples_per_second")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Small models gain nothing from intra-op threads, and on a shared 2-core machine
    # OpenMP spin-waiting makes them many times slower. Module scope: the reference run
    # and the resumed ones must use the same thread count (it changes float reductions).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Everything that carries state across steps: BatchNorm, dropout, augmentation (RNG),
# Adam moments, a warmup + cosine schedule, early stopping with best weights.
BODY = {
    "dataset": {
        "source": {"kind": "builtin", "name": "synthetic",
                   "synthetic": {"n_samples": 192, "n_classes": 3, "image_shape": [1, 8, 8]}},
        "batch_size": 32,
    },
    "model": {"kind": "cnn", "channels": [4, 8], "normalization": "batch"},
    "augmentation": {"rotation_range": 15, "width_shift_range": 0.1, "horizontal_flip": True},
    "regularization": {"dropout": 0.3, "l2": 1e-4, "weight_decay": 1e-3},
    "optimizer": {"kind": "adam", "lr": 0.01},
    "schedule": {"kind": "cosine", "warmup": {"steps": 3}},
    "early_stopping": {"monitor": "val_loss", "patience": 50, "restore_best_weights": True},
    "epochs": 4,
    "seed": 7,
    "deterministic": True,
}  # fmt: skip
STEPS = 5  # 192 samples, 20% validation -> 153 training rows -> 5 batches of 32


def spec(**override) -> JobSpec:
    return JobSpec.model_validate(BODY | override)


class StopAfter:
    def __init__(self, steps: int) -> None:
        self.calls, self.steps = 0, steps

    def should_stop(self) -> bool:
        self.calls += 1
        return self.calls > self.steps


@pytest.fixture(scope="module")
def uninterrupted():
    metrics, ckpt = MemoryMetricSink(), MemoryCheckpointSink()
    result = train(spec(), metrics=metrics, checkpoints=ckpt)
    return result, metrics, ckpt


def weights(sink: MemoryCheckpointSink, index: int = -1) -> dict[str, torch.Tensor]:
    return st_load(sink.saved[index][0].weights)


def assert_same_run(result, metrics, ckpt, reference) -> None:
    ref_result, ref_metrics, ref_ckpt = reference
    a, b = weights(ckpt), weights(ref_ckpt)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert result.status_reason == ref_result.status_reason
    assert (result.step, result.epochs_completed) == (ref_result.step, ref_result.epochs_completed)
    # The metric series continue with no gap and no duplicate, with the same values.
    assert [p[:3] for p in metrics.points] == [p[:3] for p in ref_metrics.points]
    values = [p for p in metrics.points if p[0] not in TIMING]
    assert values == [p for p in ref_metrics.points if p[0] not in TIMING]


def resume(ckpt: MemoryCheckpointSink, metrics: MemoryMetricSink):
    return train(spec(), metrics=metrics, checkpoints=ckpt)


@pytest.mark.parametrize("stop_after", [STEPS * 2 + 3, STEPS * 2])  # mid-epoch, epoch boundary
def test_cancel_then_resume_equals_uninterrupted(uninterrupted, stop_after):
    metrics, ckpt = MemoryMetricSink(), MemoryCheckpointSink()
    first = train(spec(), metrics=metrics, checkpoints=ckpt, control=StopAfter(stop_after))
    assert first.status_reason == "canceled" and first.step == stop_after
    result = resume(ckpt, metrics)
    assert_same_run(result, metrics, ckpt, uninterrupted)


def test_crash_after_a_periodic_checkpoint_resumes_from_it(uninterrupted):
    _, ref_metrics, ref_ckpt = uninterrupted
    assert [(s, e) for _, s, e, _ in ref_ckpt.saved] == [(STEPS * (e + 1), e) for e in range(4)]
    # The worker died after epoch 1's checkpoint: the retry sees only that one.
    ckpt = MemoryCheckpointSink(saved=ref_ckpt.saved[:2])
    metrics = MemoryMetricSink(points=[p for p in ref_metrics.points if p[2] <= 1])
    result = resume(ckpt, metrics)
    assert_same_run(result, metrics, ckpt, uninterrupted)


def test_a_finished_run_is_not_trained_again(uninterrupted):
    ref_result, _, ref_ckpt = uninterrupted
    metrics = MemoryMetricSink()
    again = train(spec(), metrics=metrics, checkpoints=MemoryCheckpointSink(ref_ckpt.saved[:]))
    assert again == ref_result and metrics.points == []


def test_blobs_are_safetensors_with_json_metadata(uninterrupted):
    _, _, ckpt = uninterrupted
    blob, step, epoch, metrics = ckpt.saved[0]
    for data in (blob.weights, blob.resume):
        assert not data.startswith(b"\x80")  # no pickle protocol header
        st_load(data)  # parses as safetensors
    assert set(st_load(blob.weights)) >= {"0.weight", "0.bias", "1.running_mean"}
    tensors = st_load(blob.resume)
    assert "rng.cpu" in tensors and any(k.startswith("optim.") for k in tensors)
    assert any(k.startswith("best.") for k in tensors)  # restore_best_weights is on
    header_len = int.from_bytes(blob.resume[:8], "little")
    meta = json.loads(json.loads(blob.resume[8 : 8 + header_len])["__metadata__"]["trainforge"])
    assert meta["format"] == FORMAT
    assert (meta["run"]["epoch"], meta["run"]["batch"], meta["run"]["step"]) == (1, 0, step)
    assert meta["run"]["schedule"]["kind"] == "cosine"
    assert meta["run"]["early_stopping"]["best_epoch"] == 0
    assert (step, epoch) == (STEPS, 0) and "val_loss" in metrics


def test_a_checkpoint_of_another_model_is_a_train_error(uninterrupted):
    _, _, ckpt = uninterrupted
    other = BODY["model"] | {"channels": [4, 16]}
    with pytest.raises(TrainError, match="does not fit"):
        train(spec(model=other), checkpoints=MemoryCheckpointSink(ckpt.saved[:1]))


def test_optimizer_state_takes_its_parameters_layout():
    """safetensors stores row-major; Adam's moments must come back channels_last with
    their conv weight, or the next update pairs up the wrong elements."""
    from torch import nn

    from ml.checkpoint import RunState, pack, unpack

    def make() -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        net = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
        return net, torch.optim.Adam(net.parameters(), lr=0.1, fused=True)

    net, opt = make()
    x = torch.randn(2, 3, 5, 5)
    net(x).square().sum().backward()
    opt.step()
    blob = pack(net, opt, RunState())
    again, again_opt = make()
    unpack(blob, again, again_opt)
    weight_state = again_opt.state[again.weight]
    assert weight_state["exp_avg"].stride() == again.weight.stride() != (27, 9, 3, 1)
    assert torch.equal(weight_state["exp_avg"], opt.state[net.weight]["exp_avg"])
    for model, optimizer in ((net, opt), (again, again_opt)):
        optimizer.zero_grad()
        model(x).square().sum().backward()
        optimizer.step()
    assert torch.equal(net.weight, again.weight)


@pytest.mark.parametrize(
    "optimizer",
    [
        {"kind": "sgd", "momentum": 0.9, "nesterov": True},
        {"kind": "sgd"},
        {"kind": "adamw"},
        {"kind": "rmsprop", "momentum": 0.5, "centered": True},
        {"kind": "adagrad"},
    ],
)
def test_every_optimizer_resumes_exactly(optimizer):
    body = {
        "dataset": {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 16},
        "optimizer": optimizer,
        "regularization": {"weight_decay": 0.01},
        "schedule": {"kind": "reduce_on_plateau", "monitor": "loss", "patience": 0},
        "epochs": 3,
        "deterministic": True,
    }
    job = JobSpec.model_validate(body)
    whole, parts = MemoryCheckpointSink(), MemoryCheckpointSink()
    train(job, checkpoints=whole)
    assert train(job, checkpoints=parts, control=StopAfter(11)).status_reason == "canceled"
    train(job, checkpoints=parts)
    a, b = weights(whole), weights(parts)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_text_transformer_resumes_exactly():
    """The text encoder (a graph with a padding mask and dropout inside PyTorch's encoder)."""
    import numpy as np

    from ml.checks import DatasetInfo
    from ml.data import LoadedDataset

    rng = np.random.default_rng(0)
    ids = rng.integers(2, 30, (64, 8))
    for row, end in enumerate(rng.integers(1, 9, 64)):
        ids[row, end:] = 0  # padded tails
    ids[0] = 0  # a text of padding only
    info = DatasetInfo("classification", "text", 64, 0, None, 2)
    data = LoadedDataset(ids.astype(np.float32), rng.integers(0, 2, 64), info)
    model = {"kind": "text", "encoder": "transformer", "embedding_dim": 8, "num_heads": 2,
             "num_layers": 2, "max_length": 8, "vocab_size": 30}  # fmt: skip
    job = JobSpec.model_validate({
        "dataset": {"source": {"kind": "uploaded", "dataset_id": "d"}, "batch_size": 16},
        "model": model, "regularization": {"dropout": 0.2}, "optimizer": {"kind": "adam"},
        "epochs": 3, "seed": 5, "deterministic": True,
    })  # fmt: skip
    whole, parts = MemoryCheckpointSink(), MemoryCheckpointSink()
    train(job, checkpoints=whole, dataset=data)
    stopped = train(job, checkpoints=parts, dataset=data, control=StopAfter(6))
    assert stopped.status_reason == "canceled"
    train(job, checkpoints=parts, dataset=data)
    a, b = weights(whole), weights(parts)
    assert a.keys() == b.keys() and any(k.startswith("encoder.layers.1.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)

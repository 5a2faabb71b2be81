"""The engine end to end on small data: data handling, metrics, control, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from ml.checks import DatasetInfo, builtin_info
from ml.data import LoadedDataset, load_dataset, prepare, split_indices, train_batches
from ml.engine import NonFiniteLoss, TrainError, TrainResult, train
from ml.plan import split_sizes, steps_per_epoch
from ml.schedules import build_schedule
from ml.sinks import MemoryCheckpointSink, MemoryMetricSink
from ml.spec import JobSpec

CPU = torch.device("cpu")


def spec_for(name: str = "iris", **body) -> JobSpec:
    dataset = {"source": {"kind": "builtin", "name": name}, **body.pop("dataset", {})}
    return JobSpec.model_validate({"dataset": dataset, **body})


def tabular(n: int = 60, f: int = 4, k: int = 3, seed: int = 0) -> LoadedDataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = (rng.normal(size=(n, f)) + y[:, None]).astype(np.float32)
    return LoadedDataset(x, y, DatasetInfo("classification", "tabular", n, f, None, k))


# ------------------------------------------------------------------ data


@pytest.mark.parametrize("name", ["digits", "iris", "wine", "breast_cancer", "diabetes"])
def test_builtins_load_as_described(name):
    ds = load_dataset(spec_for(name))
    info = builtin_info(spec_for(name).dataset.source)
    assert ds.info == info and len(ds.x) == len(ds.y) == info.n_samples
    assert ds.x.shape[1:] == (info.image_shape or (info.n_features,))
    if info.task == "classification":
        assert sorted(np.unique(ds.y)) == list(range(info.n_classes))


@pytest.mark.parametrize(
    "synthetic",
    [
        {"n_samples": 100, "n_features": 7, "n_classes": 4},
        {"n_samples": 50, "n_features": 3, "n_classes": 0},
        {"n_samples": 40, "n_classes": 3, "image_shape": [2, 6, 5]},
        {"n_samples": 30, "n_classes": 0, "image_shape": [1, 4, 4]},
    ],
)
def test_synthetic_is_seeded_and_shaped(synthetic):
    source = {"kind": "builtin", "name": "synthetic", "synthetic": synthetic}
    spec = JobSpec.model_validate({"dataset": {"source": source}, "seed": 3})
    a, b = load_dataset(spec), load_dataset(spec)
    c = load_dataset(spec.model_copy(update={"seed": 4}))
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) and not np.array_equal(a.x, c.x)
    info = a.info
    assert a.x.shape == (synthetic["n_samples"], *(info.image_shape or (info.n_features,)))
    if synthetic["n_classes"]:
        assert set(np.unique(a.y)) <= set(range(synthetic["n_classes"]))


def test_split_is_stratified_seeded_and_sized_like_the_plan():
    ds = load_dataset(spec_for("wine"))
    train_idx, val_idx = split_indices(ds, 0.3, seed=1)
    assert (len(train_idx), len(val_idx)) == split_sizes(len(ds.y), 0.3)
    assert set(train_idx).isdisjoint(val_idx) and len(set(train_idx) | set(val_idx)) == len(ds.y)
    full = np.bincount(ds.y) / len(ds.y)
    assert np.allclose(np.bincount(ds.y[val_idx]) / len(val_idx), full, atol=0.02)
    again, _ = split_indices(ds, 0.3, seed=1)
    other, _ = split_indices(ds, 0.3, seed=2)
    assert np.array_equal(train_idx, again) and not np.array_equal(train_idx, other)
    assert len(split_indices(ds, 0.0, seed=1)[1]) == 0


@pytest.mark.parametrize(
    ("kind", "reference"),
    [
        ("standard", StandardScaler()),
        ("minmax", MinMaxScaler((0, 1))),
        ("minmax_symmetric", MinMaxScaler((-1, 1))),
    ],
)
def test_normalization_uses_training_statistics_only(kind, reference):
    spec = spec_for("wine", dataset={"preprocessing": {"normalization": kind}})
    ds = load_dataset(spec)
    data = prepare(spec, ds, CPU)
    train_idx, val_idx = split_indices(ds, spec.dataset.validation_split, spec.seed)
    reference.fit(ds.x[train_idx])
    np.testing.assert_allclose(data.x_train.numpy(), reference.transform(ds.x[train_idx]),
                               atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(data.x_val.numpy(), reference.transform(ds.x[val_idx]), atol=1e-5)
    # no leakage: validation is *not* normalized with its own statistics
    own = type(reference)(**reference.get_params()).fit_transform(ds.x[val_idx])
    assert not np.allclose(data.x_val.numpy(), own, atol=1e-3)


def test_images_are_normalized_per_channel_and_none_leaves_data():
    spec = spec_for("digits")
    data = prepare(spec, load_dataset(spec), CPU)
    assert data.x_train.shape[1:] == (1, 8, 8)
    assert data.x_train.mean().item() == pytest.approx(0, abs=1e-4)
    assert data.x_train.std().item() == pytest.approx(1, abs=1e-3)
    raw = spec_for("digits", dataset={"preprocessing": {"normalization": "none"}})
    assert prepare(raw, load_dataset(raw), CPU).x_train.max().item() == 16


def test_batches_cover_the_split_once_per_epoch_keep_the_last_partial_one():
    spec = spec_for(dataset={"batch_size": 32})
    data = prepare(spec, load_dataset(spec), CPU)  # 120 training rows: 32, 32, 32, 24
    orders = []
    for epoch in (0, 1):
        batches = list(train_batches(data, 32, True, 0, epoch))
        assert [len(y) for _, y in batches] == [32, 32, 32, 24]
        xs = torch.cat([x for x, _ in batches])
        assert torch.equal(xs[xs[:, 0].argsort(stable=True)][:, 0], data.x_train[:, 0].sort()[0])
        orders.append(xs)
    assert not torch.equal(orders[0], orders[1])  # reshuffled every epoch
    assert torch.equal(orders[1], torch.cat([x for x, _ in train_batches(data, 32, True, 0, 1)]))
    fixed = torch.cat([x for x, _ in train_batches(data, 32, False, 0, 5)])
    assert torch.equal(fixed, data.x_train)
    resumed = list(train_batches(data, 32, True, 0, 1, start=2))
    assert torch.equal(torch.cat([x for x, _ in resumed]), orders[1][64:])


# ------------------------------------------------------------------ metrics and results


def test_metrics_are_logged_at_each_epochs_last_step_and_flushed():
    spec = spec_for(epochs=3, dataset={"batch_size": 50})
    sink, progress = MemoryMetricSink(), []
    result = train(spec, metrics=sink, on_progress=lambda e, s: progress.append((e, s)))
    steps = steps_per_epoch(120, 50)
    assert result == TrainResult("completed", 3, 3 * steps, result.final_metrics, None)
    names = {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "grad_norm",
             "epoch_seconds", "samples_per_second"}  # fmt: skip
    for epoch in range(3):
        at = {n: (s, e) for n, s, e, _ in sink.points if e == epoch}
        assert set(at) == names
        assert {s for s, _ in at.values()} == {(epoch + 1) * steps}
    assert sink.flushes >= 3
    assert result.final_metrics == {n: sink.series(n)[-1] for n in names}
    assert progress[-1] == (3, 9)
    assert all(math.isfinite(v) for v in result.final_metrics.values())
    assert result.final_metrics["samples_per_second"] > 0


def test_regression_has_no_accuracy_and_no_validation_when_split_is_zero():
    spec = spec_for("diabetes", epochs=1, dataset={"validation_split": 0})
    sink = MemoryMetricSink()
    train(spec, metrics=sink)
    assert {n for n, *_ in sink.points} == {"loss", "lr", "grad_norm", "epoch_seconds",
                                             "samples_per_second"}  # fmt: skip


def test_loaded_dataset_is_accepted():
    spec = spec_for(epochs=2, dataset={"batch_size": 16})
    result = train(spec, dataset=tabular())
    assert result.step == 2 * steps_per_epoch(48, 16)


def test_lr_follows_the_schedule_step_by_step():
    spec = spec_for(
        epochs=3,
        dataset={"batch_size": 32},
        schedule={"kind": "one_cycle"},
        optimizer={"kind": "sgd", "lr": 0.1},
    )
    sink = MemoryMetricSink()
    train(spec, metrics=sink)
    schedule = build_schedule(spec, 4)
    assert sink.series("lr") == [schedule.lr_at(e, 3) for e in range(3)]


def test_reduce_on_plateau_gets_the_epoch_metrics():
    spec = spec_for(epochs=4, optimizer={"kind": "sgd", "lr": 1e-6},
                    schedule={"kind": "reduce_on_plateau", "monitor": "loss", "patience": 0,
                              "min_delta": 10.0, "factor": 0.5})  # fmt: skip
    sink = MemoryMetricSink()
    train(spec, metrics=sink)
    # Keras: the first epoch sets the best; the second fails to improve and reduces the
    # rate, which the third epoch is the first to use.
    assert sink.series("lr") == [1e-6, 1e-6, 5e-7, 2.5e-7]


def test_grad_norm_is_logged_before_clipping():
    spec = spec_for(epochs=1, clipping={"kind": "global_norm", "max_norm": 1e-4})
    sink = MemoryMetricSink()
    train(spec, metrics=sink)
    assert sink.series("grad_norm")[0] > 1e-3


# ------------------------------------------------------------------ early stopping


def weights_of(blob_sink: MemoryCheckpointSink) -> dict[str, torch.Tensor]:
    return st_load(blob_sink.saved[-1][0].weights)


def test_early_stopping_restores_best_weights_and_metrics():
    es = {"monitor": "val_loss", "patience": 2, "restore_best_weights": True}
    base = {"epochs": 40, "deterministic": True, "optimizer": {"kind": "adam", "lr": 0.05},
            "model": {"kind": "mlp", "hidden_units": [64, 64]}}  # fmt: skip
    sink, ckpt = MemoryMetricSink(), MemoryCheckpointSink()
    result = train(spec_for("wine", early_stopping=es, **base), metrics=sink, checkpoints=ckpt)
    assert result.status_reason == "early_stopped"
    val_loss = sink.series("val_loss")
    best = int(np.argmin(val_loss))
    assert result.stopped_epoch == best + 2 == result.epochs_completed - 1
    # the same job cut at the best epoch holds the same weights and metrics
    short_ckpt, short_sink = MemoryCheckpointSink(), MemoryMetricSink()
    train(spec_for("wine", **(base | {"epochs": best + 1})), checkpoints=short_ckpt,
          metrics=short_sink)  # fmt: skip
    final, reference = weights_of(ckpt), weights_of(short_ckpt)
    assert all(torch.equal(final[k], reference[k]) for k in reference)
    timing = ("epoch_seconds", "samples_per_second")
    expected = {n: short_sink.series(n)[-1] for n in result.final_metrics if n not in timing}
    assert {k: v for k, v in result.final_metrics.items() if k not in timing} == expected
    assert ckpt.saved[-1][3]["val_loss"] == min(val_loss)


def test_early_stopping_without_restore_keeps_last_weights():
    es = {"monitor": "loss", "patience": 0, "min_delta": 100.0}
    result = train(spec_for(epochs=10, early_stopping=es))
    assert (result.status_reason, result.stopped_epoch, result.epochs_completed) == (
        "early_stopped", 1, 2
    )  # fmt: skip


# ------------------------------------------------------------------ control and errors


class StopAfter:
    def __init__(self, calls: int) -> None:
        self.calls, self.left = 0, calls

    def should_stop(self) -> bool:
        self.calls += 1
        return self.calls > self.left


def test_cancel_is_checked_every_step_and_keeps_a_final_checkpoint():
    spec = spec_for(epochs=5, dataset={"batch_size": 32})
    sink, ckpt, control = MemoryMetricSink(), MemoryCheckpointSink(), StopAfter(6)
    result = train(spec, metrics=sink, checkpoints=ckpt, control=control)
    assert (result.status_reason, result.step, result.epochs_completed) == ("canceled", 6, 1)
    assert control.calls == 7
    _, step, epoch, metrics = ckpt.saved[-1]
    assert (step, epoch) == (6, 1) and metrics == result.final_metrics
    assert sink.flushes >= 2 and sink.series("loss")


def test_non_finite_loss_names_the_step():
    ds = tabular(n=40)
    x = ds.x.copy()
    spec = spec_for(epochs=3, dataset={"batch_size": 8, "shuffle": False, "validation_split": 0,
                                       "preprocessing": {"normalization": "none"}})  # fmt: skip
    # Row 19 is in the third batch of the first epoch. (Not NaN: missing features
    # are imputed with the training means, see tests/ml/test_impute.py.)
    x[19, 0] = np.inf
    with pytest.raises(NonFiniteLoss, match="step 3 ") as err:
        train(spec, dataset=LoadedDataset(x, ds.y, ds.info))
    assert err.value.step == 3 and err.value.epoch == 0
    assert "optimizer.lr" in str(err.value)


def test_unavailable_cuda_and_unsupported_models_are_train_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TrainError, match="cuda"):
        train(spec_for(resources={"device": "cuda"}))
    with pytest.raises(TrainError, match="text"):
        train(spec_for(model={"kind": "text"}))
    with pytest.raises(TrainError, match="upload"):
        train(JobSpec.model_validate({"dataset": {"source": {"kind": "uploaded",
                                                             "dataset_id": "d1"}}}))  # fmt: skip


def test_deterministic_flag_is_restored_and_runs_repeat():
    spec = spec_for(epochs=2, deterministic=True, regularization={"dropout": 0.3})
    before = torch.are_deterministic_algorithms_enabled()
    a, b = MemoryCheckpointSink(), MemoryCheckpointSink()
    train(spec, checkpoints=a)
    train(spec, checkpoints=b)
    assert torch.are_deterministic_algorithms_enabled() == before
    wa, wb = weights_of(a), weights_of(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_on_cpu_trains(precision):
    spec = spec_for(epochs=15, resources={"device": "cpu", "precision": precision},
                    optimizer={"kind": "adam", "lr": 0.01})  # fmt: skip
    result = train(spec)
    assert result.final_metrics["val_accuracy"] >= 0.8


@pytest.mark.slow
def test_compile_on_cpu_trains_and_checkpoints_plain_keys():
    spec = spec_for(epochs=2, dataset={"batch_size": 30}, resources={"compile": True},
                    model={"kind": "mlp", "hidden_units": [8]})  # fmt: skip
    ckpt = MemoryCheckpointSink()
    assert train(spec, checkpoints=ckpt).epochs_completed == 2
    assert set(weights_of(ckpt)) == {"1.weight", "1.bias", "3.weight", "3.bias"}


def test_each_step_runs_at_the_schedules_rate(monkeypatch):
    from ml.trainer import Trainer

    used: list[float] = []
    original = Trainer.step

    def spy(self, xb, yb, lr, measure_norm=True):
        used.append(lr)
        out = original(self, xb, yb, lr, measure_norm)
        assert all(g["lr"] == lr for g in self.optimizer.param_groups)
        return out

    monkeypatch.setattr(Trainer, "step", spy)
    spec = spec_for(
        epochs=3,
        dataset={"batch_size": 32},
        schedule={"kind": "cosine", "warmup": {"steps": 5, "start_factor": 0.1}},
        optimizer={"kind": "sgd", "lr": 0.1},
    )
    train(spec)
    schedule = build_schedule(spec, 4)
    assert used == [schedule.lr_at(e, i) for e in range(3) for i in range(4)]


@pytest.mark.parametrize(
    ("body", "cls", "expected"),
    [
        ({"kind": "sgd", "lr": 0.1, "momentum": 0.8, "nesterov": True}, torch.optim.SGD,
         {"lr": 0.1, "momentum": 0.8, "nesterov": True}),
        ({"kind": "adam", "beta1": 0.8, "beta2": 0.9, "eps": 1e-6}, torch.optim.Adam,
         {"betas": (0.8, 0.9), "eps": 1e-6, "fused": True}),
        ({"kind": "adamw"}, torch.optim.AdamW, {"eps": 1e-7, "fused": True}),
        ({"kind": "rmsprop", "rho": 0.8, "momentum": 0.3, "centered": True},
         torch.optim.RMSprop, {"alpha": 0.8, "momentum": 0.3, "centered": True, "eps": 1e-7}),
        ({"kind": "adagrad", "initial_accumulator_value": 0.2}, torch.optim.Adagrad,
         {"initial_accumulator_value": 0.2, "eps": 1e-7}),
    ],
)  # fmt: skip
def test_optimizers_map_keras_names_to_torch(body, cls, expected):
    from ml.models import build_model
    from ml.optim import build_optimizer

    spec = spec_for(optimizer=body)
    opt = build_optimizer(spec, build_model(spec, builtin_info(spec.dataset.source)), CPU)
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert {k: group[k] for k in expected} == expected
    assert group.get("weight_decay", 0) == 0  # decay is decoupled, never torch's coupled L2


def test_the_device_is_read_every_sync_interval_not_every_step(monkeypatch):
    """On a GPU a host read is a sync: the loop must not do one per step."""
    from ml.engine import SYNC_EVERY

    reads = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name):
            reads.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    spec = spec_for(epochs=3, dataset={"batch_size": 4})  # 30 steps per epoch
    result = train(spec)
    assert result.step == 90
    # per epoch: the end-of-epoch sync, val_loss and val_accuracy; plus one per interval
    assert len(reads) <= 3 * 3 + 90 // SYNC_EVERY, reads

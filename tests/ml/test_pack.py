"""Packed trials against their reference, the solo engine (ml.engine.train) on the same spec.

Each case trains 2-3 members packed and each member alone, and compares every epoch metric
(loss, accuracy, val_loss, val_accuracy, lr, grad_norm) within 1e-5 relative (float
re-association of batched kernels aside, docs/sweeps.md "Packed trials"), and the weights
after the run. Small models and data keep the file within its budget."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load as st_load

from ml.engine import TrainResult, train
from ml.logsink import MemoryLogSink
from ml.pack import PackMember, train_pack
from ml.sinks import MemoryCheckpointSink, MemoryMetricSink
from ml.spec import JobSpec

COMPARED = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "grad_norm")
RTOL = 1e-5
SEED_SD_VAL_ACCURACY = 0.0096  # measured: bench/packed_tolerance.py, docs/sweeps.md


def job(**parts) -> JobSpec:
    body = {
        "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 64},
        "model": {"kind": "mlp", "hidden_units": [32]},
        "epochs": 2,
        "resources": {"device": "cpu"},
    }
    for key, value in parts.items():
        body[key] = value
    return JobSpec.model_validate(body)


def solo(spec: JobSpec) -> tuple[TrainResult, MemoryMetricSink, MemoryCheckpointSink]:
    metrics, checkpoints = MemoryMetricSink(), MemoryCheckpointSink()
    return train(spec, metrics=metrics, checkpoints=checkpoints), metrics, checkpoints


def packed(specs: list[JobSpec]) -> list[tuple[object, MemoryMetricSink, MemoryCheckpointSink]]:
    """Train ``specs`` as one pack; fails unless they really trained packed (no fallback)."""
    sinks = [(MemoryMetricSink(), MemoryCheckpointSink(), MemoryLogSink()) for _ in specs]
    members = [
        PackMember(f"j{i}", s, metrics=m, checkpoints=c, logs=log)
        for i, (s, (m, c, log)) in enumerate(zip(specs, sinks, strict=True))
    ]
    results = train_pack(members)
    for _, _, log in sinks:
        said = " ".join(log.messages())
        assert f"training in a pack of {len(specs)}" in said and "not packed" not in said
    return [(r, m, c) for r, (m, c, _) in zip(results, sinks, strict=True)]


def assert_metrics_match(a: MemoryMetricSink, b: MemoryMetricSink, rtol: float = RTOL) -> None:
    for name in COMPARED:
        sa, sb = a.series(name), b.series(name)
        assert len(sa) == len(sb), name
        for x, y in zip(sa, sb, strict=True):
            assert math.isclose(x, y, rel_tol=rtol, abs_tol=1e-7), (name, sa, sb)
    assert [(n, s, e) for n, s, e, _ in a.points] == [(n, s, e) for n, s, e, _ in b.points]


def assert_weights_match(a: MemoryCheckpointSink, b: MemoryCheckpointSink) -> None:
    wa, wb = st_load(a.saved[-1][0].weights), st_load(b.saved[-1][0].weights)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=2e-5)


def check_against_solo(specs: list[JobSpec], weights: bool = True) -> None:
    for spec, (result, metrics, checkpoints) in zip(specs, packed(specs), strict=True):
        ref, ref_metrics, ref_checkpoints = solo(spec)
        assert isinstance(result, TrainResult), result
        assert result.status_reason == ref.status_reason
        assert (result.epochs_completed, result.step) == (ref.epochs_completed, ref.step)
        assert_metrics_match(ref_metrics, metrics)
        if weights:
            assert_weights_match(ref_checkpoints, checkpoints)


def test_adam_constant_global_norm_and_every_regularizer():
    clip = {"kind": "global_norm", "max_norm": 1.0}
    check_against_solo([
        job(optimizer={"kind": "adam", "lr": 1e-3}, clipping={**clip, "max_norm": 100.0}),
        job(optimizer={"kind": "adam", "lr": 3e-3, "beta1": 0.8, "eps": 1e-6}, clipping=clip,
            regularization={"l1": 1e-4, "l2": 1e-3, "weight_decay": 1e-2,
                            "label_smoothing": 0.1}),
        job(optimizer={"kind": "adam", "lr": 2e-3, "beta2": 0.99}, clipping=clip,
            regularization={"l2": 1e-4}),
    ])  # fmt: skip


def test_adamw_cosine_with_warmup_and_norm_clipping():
    schedule = {"kind": "cosine", "warmup": {"steps": 10, "start_factor": 0.1}}
    check_against_solo([
        job(optimizer={"kind": "adamw", "lr": 2e-3}, schedule=schedule,
            clipping={"kind": "norm", "max_norm": 0.5}, regularization={"weight_decay": 0.05}),
        job(optimizer={"kind": "adamw", "lr": 5e-3}, schedule={**schedule, "eta_min": 1e-4},
            clipping={"kind": "norm", "max_norm": 2.0}),
    ])  # fmt: skip


def test_members_of_one_learning_rate_share_a_fused_adam_call(monkeypatch):
    """A grid's members of equal lr (any order in the sweep) take one fused Adam call on their
    slice of the stacks, and each still trains as alone: its own weight decay, its own
    schedule's lr each step."""
    calls: list[int] = []
    fused = torch._fused_adam_

    def counting(params, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(params))
        return fused(params, *args, **kwargs)

    monkeypatch.setattr(torch, "_fused_adam_", counting)
    half = {"kind": "step_decay", "decay_rate": 0.5, "decay_step": 2}  # from epoch 2
    quarter = {**half, "decay_rate": 0.25}
    specs = [
        job(optimizer={"kind": "adam", "lr": 3e-3}, schedule=half,
            regularization={"weight_decay": 1e-2}),
        job(optimizer={"kind": "adam", "lr": 1e-3}, schedule=half),
        job(optimizer={"kind": "adam", "lr": 3e-3}, schedule=quarter),
        job(optimizer={"kind": "adam", "lr": 1e-3}, schedule=half,
            regularization={"weight_decay": 1e-3}),
    ]  # fmt: skip
    results = packed(specs)
    packed_calls = list(calls)
    n_params = 4  # two dense layers: kernel and bias each
    # Epoch 1: two lrs, two calls of two members each; epoch 2 (the decays): three lrs.
    assert {len(specs) * n_params // 2, n_params} >= set(packed_calls) and packed_calls
    steps = results[0][0].step  # type: ignore[attr-defined]
    assert len(packed_calls) == steps // 2 * 2 + steps // 2 * 3
    for spec, (result, metrics, checkpoints) in zip(specs, results, strict=True):
        _, ref_metrics, ref_checkpoints = solo(spec)
        assert isinstance(result, TrainResult), result
        assert_metrics_match(ref_metrics, metrics)
        assert_weights_match(ref_checkpoints, checkpoints)


def test_sgd_nesterov_step_decay_value_clipping_and_dropout():
    """Dropout: each member's masks are its solo run's (its own generator, same calls)."""
    check_against_solo([
        job(optimizer={"kind": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
            schedule={"kind": "step_decay", "decay_rate": 0.5, "decay_step": 1},
            clipping={"kind": "value", "clip_value": 0.05}, regularization={"dropout": 0.2}),
        job(optimizer={"kind": "sgd", "lr": 0.02, "momentum": 0.5, "nesterov": True},
            schedule={"kind": "step_decay"}, clipping={"kind": "value", "clip_value": 1.0},
            regularization={"dropout": 0.4, "weight_decay": 1e-3}, seed=3),
    ])  # fmt: skip


def test_members_without_dropout_pack_with_members_with_it():
    """``dropout: 0`` builds no dropout layer (other parameter names, no random draws): such a
    member packs with dropout members and still trains as its solo run, as do they."""
    check_against_solo([
        job(optimizer={"kind": "adam", "lr": 2e-3}, regularization={"dropout": 0.3}),
        job(optimizer={"kind": "adam", "lr": 2e-3}),
        job(optimizer={"kind": "adam", "lr": 1e-3}, regularization={"dropout": 0.1}),
        job(optimizer={"kind": "adam", "lr": 1e-3}, model={"kind": "mlp", "hidden_units": [32]},
            regularization={"weight_decay": 1e-3}),
    ])  # fmt: skip


def test_sgd_plateau_adaptive_clipping_with_per_member_seeds():
    """Seeds differ: each member reads its own split, scaling and batch order."""
    plateau = {"kind": "reduce_on_plateau", "patience": 0, "factor": 0.5, "min_delta": 10.0}
    check_against_solo([
        job(optimizer={"kind": "sgd", "lr": 0.1}, schedule=plateau, seed=1,
            clipping={"kind": "adaptive", "clip_factor": 0.05}),
        job(optimizer={"kind": "sgd", "lr": 0.05, "momentum": 0.9}, schedule=plateau, seed=2,
            clipping={"kind": "adaptive", "clip_factor": 0.5, "eps": 1e-2}),
    ])  # fmt: skip


def test_small_cnn_with_batch_norm():
    """A conv bias before batch norm has a zero gradient up to rounding, which Adam turns
    into steps of size lr in a direction set by rounding noise: that bias and the running
    means behind it are not compared; every metric and every other weight is."""
    model = {"kind": "cnn", "channels": [4, 8]}
    specs = [job(model=model, optimizer={"kind": "adam", "lr": lr}, seed=s, epochs=1)
             for lr, s in ((1e-3, 0), (3e-3, 0), (2e-3, 5))]  # fmt: skip
    for spec, (result, metrics, checkpoints) in zip(specs, packed(specs), strict=True):
        _, ref_metrics, ref_checkpoints = solo(spec)
        assert isinstance(result, TrainResult)
        # training metrics exactly; validation (running statistics) within 1e-3
        for name in ("loss", "accuracy", "grad_norm", "lr"):
            assert metrics.series(name) == pytest.approx(ref_metrics.series(name), rel=RTOL)
        assert metrics.series("val_loss") == pytest.approx(ref_metrics.series("val_loss"), rel=1e-3)
        # the documented tolerance: one seed-to-seed standard deviation of the solo run
        # (0.0096 val_accuracy, bench/packed_tolerance.py; docs/sweeps.md "Packed trials")
        gap = abs(metrics.series("val_accuracy")[-1] - ref_metrics.series("val_accuracy")[-1])
        assert gap <= SEED_SD_VAL_ACCURACY
        wa = st_load(ref_checkpoints.saved[-1][0].weights)
        wb = st_load(checkpoints.saved[-1][0].weights)
        for k in wa:
            if k.endswith("weight") and wa[k].ndim > 1:
                torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=2e-5)


def test_regression_mse():
    body = {"source": {"kind": "builtin", "name": "diabetes"}, "batch_size": 64}
    check_against_solo([
        job(dataset=body, optimizer={"kind": "adam", "lr": lr}, regularization={"l1": l1})
        for lr, l1 in ((1e-2, 0.0), (3e-2, 1e-3))
    ])  # fmt: skip


def test_chain_graph_of_every_packed_layer_kind():
    """Strided `same` convolutions (padded), depthwise and separable ones, layer norm on a
    map, average pooling with `same`, global max pooling, dense with activation, dropout."""
    graph = {"kind": "graph", "layers": [
        {"op": "conv2d", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "same",
         "activation": "relu"},
        {"op": "layer_norm"},
        {"op": "depthwise_conv2d", "kernel_size": 3, "padding": "same"},
        {"op": "separable_conv2d", "filters": 6, "kernel_size": 3, "padding": "same",
         "activation": "tanh"},
        {"op": "avg_pool2d", "pool_size": 3, "strides": 2, "padding": "same"},
        {"op": "global_max_pool"},
        {"op": "dense", "units": 8, "activation": "gelu"},
        {"op": "dropout", "rate": 0.2},
    ]}  # fmt: skip
    check_against_solo([
        job(model=graph, optimizer={"kind": "adam", "lr": lr}, seed=s, epochs=1)
        for lr, s in ((1e-3, 0), (3e-3, 2))
    ])  # fmt: skip


def test_mlp_with_batch_and_layer_norm():
    for norm in ("batch", "layer"):
        model = {"kind": "mlp", "hidden_units": [16, 8], "normalization": norm}
        check_against_solo([
            job(model=model, optimizer={"kind": "sgd", "lr": lr, "momentum": 0.9}, epochs=1)
            for lr in (0.01, 0.05)
        ])  # fmt: skip


def test_extra_metrics_per_member():
    """`metrics` is out of the key: each member computes its own list, as its solo run."""
    specs = [job(metrics=["f1_macro", "top_2_accuracy"], epochs=1), job(epochs=1, seed=1)]
    for spec, (result, metrics, _) in zip(specs, packed(specs), strict=True):
        _, ref, _ = solo(spec)
        assert isinstance(result, TrainResult)
        names = {n for n, *_ in ref.points}
        assert names == {n for n, *_ in metrics.points}
        for name in names - {"epoch_seconds", "samples_per_second"}:
            assert metrics.series(name) == pytest.approx(ref.series(name), rel=RTOL), name

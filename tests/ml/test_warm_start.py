"""ml.warm_start: a run starts from another run's weights (by name and shape), resets and
freezes layers; frozen weights and batch-norm statistics are bit-identical at the end."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from safetensors.torch import load as st_load

from ml.architecture import TrainError
from ml.data import load_dataset, prepare
from ml.engine import train
from ml.logsink import MemoryLogSink
from ml.sinks import MemoryCheckpointSink
from ml.spec import JobSpec
from ml.trainer import Trainer
from ml.warm_start import WarmStart

CPU = torch.device("cpu")
MLP = {"kind": "mlp", "hidden_units": [16, 8], "normalization": "batch"}


def spec_for(source: dict[str, Any], **body: Any) -> JobSpec:
    dataset = {"source": source, "batch_size": 16, **body.pop("dataset", {})}
    return JobSpec.model_validate({"dataset": dataset, "model": MLP, **body})


IRIS = {"kind": "builtin", "name": "iris"}


def trained_weights(spec: JobSpec) -> tuple[dict[str, torch.Tensor], float]:
    """The final weights of a short run, and its last val_accuracy."""
    checkpoints = MemoryCheckpointSink()
    result = train(spec, checkpoints=checkpoints)
    return st_load(checkpoints.saved[-1][0].weights), result.final_metrics["val_accuracy"]


def test_a_warm_started_run_starts_from_the_source_accuracy_not_chance() -> None:
    source = spec_for(IRIS, epochs=8, optimizer={"kind": "adam", "lr": 0.01})
    weights, accuracy = trained_weights(source)
    target = spec_for(IRIS, epochs=1)  # same seed: the same validation split
    data = prepare(target, load_dataset(target), CPU)
    warm = Trainer(target, data, CPU, WarmStart(weights))
    assert warm.warm_start is not None and not warm.warm_start.skipped
    assert warm.evaluate()["val_accuracy"] == accuracy > 0.8
    scratch = Trainer(target, data, CPU)
    assert scratch.evaluate()["val_accuracy"] != accuracy


def test_a_head_of_another_shape_and_reset_layers_keep_their_initialisation() -> None:
    synthetic = {"kind": "builtin", "name": "synthetic", "synthetic": {"n_samples": 120,
                 "n_features": 4, "n_classes": 3}}  # fmt: skip
    weights, _ = trained_weights(spec_for(synthetic, epochs=1))
    four = {**synthetic, "synthetic": {**synthetic["synthetic"], "n_classes": 4}}
    target = spec_for(four, epochs=1)
    data = prepare(target, load_dataset(target), CPU)
    trainer = Trainer(target, data, CPU, WarmStart(weights, reset=["4"]))
    report = trainer.warm_start
    assert report is not None
    assert report.reinitialised == ["4.weight", "4.bias", "7.weight", "7.bias"]
    assert {s.kind for s in report.skipped.values()} == {"head_reinitialised", "reset"}
    assert "weight (3, 8) in the source, (4, 8) here" in report.skipped["7.bias"].message
    assert report.reset == ["4.weight", "4.bias"]
    state = trainer.model.state_dict()
    assert torch.equal(state["1.weight"], weights["1.weight"])
    assert not torch.equal(state["4.weight"], weights["4.weight"])


@pytest.mark.parametrize(
    "optimizer", [{"kind": "adamw", "lr": 0.01}, {"kind": "sgd", "lr": 0.05, "momentum": 0.9}]
)
def test_frozen_layers_and_their_batch_norm_statistics_are_bit_identical(
    optimizer: dict[str, Any],
) -> None:
    weights, _ = trained_weights(spec_for(IRIS, epochs=2))
    target = spec_for(
        IRIS, epochs=3, optimizer=optimizer, regularization={"weight_decay": 0.1, "l2": 0.01}
    )
    checkpoints, logs = MemoryCheckpointSink(), MemoryLogSink()
    warm = WarmStart(weights, freeze=["1", "2"])
    train(target, checkpoints=checkpoints, warm_start=warm, logs=logs)
    final = st_load(checkpoints.saved[-1][0].weights)
    frozen = ["1.weight", "1.bias", "2.weight", "2.bias", "2.running_mean", "2.running_var",
              "2.num_batches_tracked"]  # fmt: skip
    for name in frozen:
        assert torch.equal(final[name], weights[name]), name
    for name in ("4.weight", "5.running_mean", "7.weight"):
        assert not torch.equal(final[name], weights[name]), name
    assert any("4 parameter(s) frozen" in line for _, line in logs.lines)


def test_unknown_layers_and_a_source_that_fits_nothing_are_train_errors() -> None:
    weights, _ = trained_weights(spec_for(IRIS, epochs=1))
    target = spec_for(IRIS, epochs=1)
    data = prepare(target, load_dataset(target), CPU)
    with pytest.raises(TrainError, match=r"'stem'.*its layers are layers.0, layers.1, layers.2"):
        Trainer(target, data, CPU, WarmStart(weights, freeze=["stem"]))
    with pytest.raises(TrainError, match="no tensor"):
        Trainer(target, data, CPU, WarmStart({"x": torch.zeros(1)}))


def test_layers_are_named_by_their_plan_ids_in_a_graph_and_in_a_shorthand() -> None:
    """freeze / reset take plan.layers' ids: a graph layer's own id, layers.<i>, head."""
    graph = {"kind": "graph", "layers": [
        {"op": "dense", "units": 16, "id": "body"}, {"op": "activation", "fn": "relu"},
        {"op": "dense", "units": 8}]}  # fmt: skip
    source = JobSpec.model_validate(
        {"dataset": {"source": IRIS, "batch_size": 16}, "model": graph, "epochs": 1}
    )
    weights, _ = trained_weights(source)
    target = source.model_copy(update={"epochs": 2})
    checkpoints = MemoryCheckpointSink()
    warm = WarmStart(weights, freeze=["body"], reset=["head"])
    train(target, checkpoints=checkpoints, warm_start=warm)
    final = st_load(checkpoints.saved[-1][0].weights)
    body, dense2, head = (sorted({k.split(".")[0] for k in final})[i] for i in range(3))
    assert torch.equal(final[f"{body}.weight"], weights[f"{body}.weight"])
    assert not torch.equal(final[f"{dense2}.weight"], weights[f"{dense2}.weight"])
    assert not torch.equal(final[f"{head}.weight"], weights[f"{head}.weight"])

    mlp = spec_for(IRIS, epochs=1)  # the shorthand's plan ids name the same modules
    data = prepare(mlp, load_dataset(mlp), CPU)
    mlp_weights, _ = trained_weights(mlp)
    by_id = Trainer(mlp, data, CPU, WarmStart(mlp_weights, freeze=["layers.1", "layers.2"]))
    by_module = Trainer(mlp, data, CPU, WarmStart(mlp_weights, freeze=["1", "2"]))
    assert by_id.warm_start is not None and by_module.warm_start is not None
    assert by_id.warm_start.frozen == by_module.warm_start.frozen != []


@pytest.mark.parametrize("schedule", [{"kind": "constant"}, {"kind": "exponential", "gamma": 0.8}])
def test_a_continued_run_equals_an_uninterrupted_one(schedule: dict[str, Any]) -> None:
    body: dict[str, Any] = {"optimizer": {"kind": "adam", "lr": 0.01}, "schedule": schedule}
    source_sink = MemoryCheckpointSink()
    train(spec_for(IRIS, epochs=2, **body), checkpoints=source_sink)
    blob = source_sink.saved[-1][0]
    continued, whole = MemoryCheckpointSink(), MemoryCheckpointSink()
    total = spec_for(IRIS, epochs=5, **body)
    warm = WarmStart(st_load(blob.weights), resume=blob)
    result = train(total, checkpoints=continued, warm_start=warm)
    train(total, checkpoints=whole)
    assert result.epochs_completed == 5 and result.status_reason == "completed"
    a, b = st_load(continued.saved[-1][0].weights), st_load(whole.saved[-1][0].weights)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(TrainError, match="above that"):
        train(spec_for(IRIS, epochs=2, **body), warm_start=warm)

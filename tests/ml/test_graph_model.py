"""Graph models in the engine: the plan counts the built model, per-layer init / l1 / l2 /
trainable act on that layer only, masking follows Keras, and a residual graph learns
digits (slow)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ml.checks import DatasetInfo, builtin_info, check_spec
from ml.data import LoadedDataset, prepare
from ml.engine import train
from ml.graph_model import build_graph
from ml.graph_spec import GraphModel
from ml.models import build_model, regularization_penalty
from ml.plan import describe
from ml.sinks import MemoryCheckpointSink, MemoryMetricSink
from ml.spec import BuiltinSource, JobSpec
from ml.trainer import Trainer

DIGITS = {"source": {"kind": "builtin", "name": "digits"}}
RESIDUAL = [
    {"op": "conv2d", "filters": 32, "kernel_size": 3, "padding": "same", "id": "stem"},
    {"op": "batch_norm"},
    {"op": "activation", "fn": "relu"},
    {"op": "conv2d", "filters": 32, "kernel_size": 3, "padding": "same"},
    {"op": "batch_norm"},
    {"op": "add", "inputs": ["stem", -1]},
    {"op": "activation", "fn": "relu"},
    {"op": "max_pool2d"},
    {"op": "global_avg_pool"},
    {"op": "dropout", "rate": 0.2},
]


def job(layers: list[dict[str, Any]], **extra: Any) -> JobSpec:
    body = {"dataset": DIGITS, "model": {"kind": "graph", "layers": layers}, **extra}
    return JobSpec.model_validate(body)


def test_plan_counts_the_built_torch_model():
    spec = job(RESIDUAL)
    info = builtin_info(BuiltinSource(name="digits"))
    plan = describe(spec, info)
    net = build_graph(spec.model, info, 10)  # type: ignore[arg-type]
    assert plan.parameter_count == sum(p.numel() for p in net.parameters())
    assert sum(la.parameter_count for la in plan.layers) == plan.parameter_count
    assert plan.layers[-1].op == "dense" and plan.layers[-1].output_shape == (10,)


def _trainer(spec: JobSpec) -> Trainer:
    from ml.data import load_dataset

    return Trainer(spec, prepare(spec, load_dataset(spec), torch.device("cpu")),
                   torch.device("cpu"))  # fmt: skip


SMALL = [
    {"op": "conv2d", "filters": 4, "padding": "same", "l2": 0.5, "init": "orthogonal"},
    {"op": "flatten"},
    {"op": "dense", "units": 8, "trainable": False},
    {"op": "dense", "units": 6, "l1": 0.0},
]


def test_per_layer_init_l1_l2_and_trainable():
    torch.manual_seed(0)
    spec = job(SMALL, regularization={"l1": 0.01}, init={"kind": "he_normal"}, epochs=1)
    t = _trainer(spec)
    conv, dense1, dense2, head = t.model[0], t.model[2], t.model[3], t.model[4]
    # orthogonal: the (4, 9) kernel's rows are orthonormal
    flat = conv.weight.detach().reshape(4, -1)
    assert torch.allclose(flat @ flat.T, torch.eye(4), atol=1e-5)
    # the spec's l1 on the kernels that do not override it, the conv's own l2 (and the
    # spec's l1, which it does not override), nothing on dense2 (l1 0 overrides)
    expected = (
        0.01 * conv.weight.abs().sum() + 0.5 * conv.weight.square().sum()
        + 0.01 * dense1.weight.abs().sum() + 0.01 * head.weight.abs().sum()
    )  # fmt: skip
    assert torch.allclose(t.penalty(), expected)
    assert not torch.allclose(
        t.penalty(), regularization_penalty([conv.weight, dense1.weight, dense2.weight,
                                             head.weight], 0.01, 0.0))  # fmt: skip
    before = dense1.weight.detach().clone()
    other = dense2.weight.detach().clone()
    xb, yb = t.data.x_train[:32], t.data.y_train[:32]
    t.step(xb, yb, 0.01)
    assert torch.equal(dense1.weight, before)  # trainable: false
    assert not torch.equal(dense2.weight, other)


def test_masked_pooling_lstm_and_attention_ignore_padding():
    """A text and the same text with more padding give the same output (Keras masking)."""
    info = DatasetInfo("classification", "text", 10, 0, None, 2)
    for tail in (
        [{"op": "global_avg_pool"}],
        [{"op": "global_max_pool"}],
        [{"op": "lstm", "units": 3}],
        [{"op": "gru", "units": 3, "return_sequences": True}, {"op": "global_avg_pool"}],
        [{"op": "multi_head_attention", "num_heads": 2}, {"op": "global_avg_pool"}],
    ):
        layers = [{"op": "embedding", "output_dim": 4}, *tail]
        short = GraphModel.model_validate({"layers": layers, "vocab_size": 20, "max_length": 4})
        long = short.model_copy(update={"max_length": 7})
        torch.manual_seed(0)
        a = build_graph(short, info, 2).eval()
        b = build_graph(long, info, 2).eval()
        b.load_state_dict(a.state_dict())
        ids = torch.tensor([[5.0, 7.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
        padded = torch.cat([ids, torch.zeros(2, 3)], dim=1)
        with torch.no_grad():
            torch.testing.assert_close(a(ids), b(padded), rtol=0, atol=1e-6)


class _StopAfter:
    def __init__(self, steps: int) -> None:
        self.calls, self.steps = 0, steps

    def should_stop(self) -> bool:
        self.calls += 1
        return self.calls > self.steps


def test_a_graph_resumes_bit_identically():
    layers = [{"op": "conv2d", "filters": 4, "padding": "same", "id": "a"},
              {"op": "batch_norm"}, {"op": "add", "inputs": ["a", -1]},
              {"op": "global_avg_pool"}, {"op": "dropout", "rate": 0.3}]  # fmt: skip
    spec = job(layers, epochs=2, seed=3, deterministic=True, dataset={**DIGITS, "batch_size": 256})
    full, sink = MemoryMetricSink(), MemoryCheckpointSink()
    train(spec, metrics=full, checkpoints=sink)
    metrics, resumed = MemoryMetricSink(), MemoryCheckpointSink()
    first = train(spec, metrics=metrics, checkpoints=resumed, control=_StopAfter(8))
    assert first.status_reason == "canceled"
    train(spec, metrics=metrics, checkpoints=resumed)
    assert resumed.saved[-1][0].weights == sink.saved[-1][0].weights
    assert metrics.series("val_loss") == full.series("val_loss")


def test_frozen_layers_have_no_gradient():
    info = builtin_info(BuiltinSource(name="digits"))
    model = GraphModel.model_validate({"layers": [{"op": "flatten"},
                                                  {"op": "dense", "units": 3,
                                                   "trainable": False}]})  # fmt: skip
    net = build_graph(model, info, 10)
    assert [p.requires_grad for p in net[1].parameters()] == [False, False]
    assert all(p.requires_grad for p in net[2].parameters())
    assert isinstance(net[2], nn.Linear)


def test_a_frozen_batch_norm_keeps_its_statistics_as_keras():
    info = builtin_info(BuiltinSource(name="digits"))
    layers = [
        {"op": "flatten"},
        {"op": "batch_norm", "trainable": False},
        {"op": "dense", "units": 4},
    ]
    net = build_graph(GraphModel.model_validate({"layers": layers}), info, 10).train()
    bn = net[1]
    assert isinstance(bn, nn.BatchNorm1d) and not bn.training and net[2].training
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    x = torch.randn(16, 64) * 3 + 1
    scale = before["weight"] / (before["running_var"] + bn.eps).sqrt()
    torch.testing.assert_close(bn(x), (x - before["running_mean"]) * scale + before["bias"])
    assert all(torch.equal(v, before[k]) for k, v in bn.state_dict().items())


@pytest.mark.slow
def test_a_residual_graph_learns_digits():
    spec = job(RESIDUAL, optimizer={"kind": "adam", "lr": 0.003}, epochs=15, seed=0)
    assert train(spec).final_metrics["val_accuracy"] >= 0.97


TEXT = DatasetInfo("classification", "text", 2000, 0, None, 2)


def order_task(n: int = 2000, length: int = 20, vocab: int = 100) -> LoadedDataset:
    """Class 1: token 2 comes before token 3 in the text; class 0: after. Mean pooling of
    embeddings cannot tell the two apart (the same bag of tokens), attention can."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    ids = rng.integers(4, vocab, (n, length))
    for i in range(n):
        size = rng.integers(4, length + 1)
        a, b = sorted(rng.choice(size, 2, replace=False))
        ids[i, a], ids[i, b] = (2, 3) if y[i] else (3, 2)
        ids[i, size:] = 0
    return LoadedDataset(ids.astype(np.float32), y, TEXT)


TRANSFORMER = {"kind": "transformer", "num_layers": 2, "num_heads": 4, "width": 32,
               "vocab_size": 100, "max_length": 20}  # fmt: skip
UPLOAD = {"source": {"kind": "uploaded", "dataset_id": "d"}}


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_named_shorthands_count_their_built_model(dropout):
    digits = builtin_info(BuiltinSource(name="digits"))
    for model, info in (({"kind": "resnet", "depth": 3, "width": 8}, digits),
                        (TRANSFORMER, TEXT)):  # fmt: skip
        spec = JobSpec.model_validate({"dataset": UPLOAD, "model": model,
                                       "regularization": {"dropout": dropout}})  # fmt: skip
        net = build_model(spec, info)
        plan = describe(spec, info)
        assert plan.parameter_count == sum(p.numel() for p in net.parameters())
        assert check_spec(spec, info) == []


def test_named_shorthands_need_their_data():
    iris = builtin_info(BuiltinSource(name="iris"))
    spec = JobSpec.model_validate({"dataset": UPLOAD, "model": {"kind": "resnet"}})
    assert [p.loc for p in check_spec(spec, iris)] == [("model", "kind")]
    spec = JobSpec.model_validate({"dataset": UPLOAD, "model": TRANSFORMER | {"num_heads": 3}})
    assert [p.loc for p in check_spec(spec, TEXT)] == [("model", "num_heads")]


@pytest.mark.slow
def test_resnet_shorthand_learns_digits():
    adam = {"kind": "adam", "lr": 0.003}
    spec = JobSpec.model_validate(
        {"dataset": DIGITS, "model": {"kind": "resnet"}, "optimizer": adam, "epochs": 10}
    )
    assert train(spec).final_metrics["val_accuracy"] >= 0.97


@pytest.mark.slow
def test_transformer_shorthand_learns_word_order():
    spec = JobSpec.model_validate({"dataset": UPLOAD, "model": TRANSFORMER, "epochs": 10})
    assert train(spec, dataset=order_task()).final_metrics["val_accuracy"] >= 0.93


def test_docs_show_every_op_in_a_complete_job_and_the_example_validates():
    import json
    import re
    import typing
    from pathlib import Path

    import yaml

    from ml.graph_spec import Layer

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "spec.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```json\n(.*?)^```", doc, re.DOTALL | re.MULTILINE)
    shown = {layer["op"] for b in blocks for layer in
             json.loads(b).get("model", {}).get("layers", [])}  # fmt: skip
    variants = typing.get_args(typing.get_args(Layer)[0])
    ops = {v.model_fields["op"].default for v in variants}
    assert ops - shown == set()
    example = yaml.safe_load((root / "examples" / "digits-residual.yaml").read_text())
    spec = JobSpec.model_validate(example["spec"])
    assert check_spec(spec, builtin_info(BuiltinSource(name="digits"))) == []


@pytest.mark.parametrize("encoder", ["pooling", "transformer"])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_the_text_model_is_described_layer_by_layer(encoder, dropout):
    model = {"kind": "text", "encoder": encoder, "embedding_dim": 16, "num_layers": 2,
             "num_heads": 4, "vocab_size": 50, "max_length": 12}  # fmt: skip
    spec = JobSpec.model_validate({"dataset": UPLOAD, "model": model,
                                   "regularization": {"dropout": dropout}})  # fmt: skip
    plan = describe(spec, TEXT)
    ops = {"pooling": ["embedding", "global_avg_pool", "dropout", "dense"],
           "transformer": ["embedding", "position_embedding", "transformer_encoder",
                           "layer_norm", "global_avg_pool", "dropout", "dense"]}  # fmt: skip
    assert [la.op for la in plan.layers] == ops[encoder]
    assert sum(la.parameter_count for la in plan.layers) == plan.parameter_count
    net = build_model(spec, TEXT)
    assert plan.parameter_count == sum(p.numel() for p in net.parameters())
    for la in plan.layers:  # layer by layer: the module each describes
        assert la.parameter_count == sum(p.numel() for p in net[la.index].parameters()), la

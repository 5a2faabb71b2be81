"""Every graph op exports to ONNX and ONNX Runtime answers what PyTorch answers (1e-5),
through the worker's export path (``ml.export.export_model``: preprocessing in the graph,
its own parity check) and checked again here on the raw validation rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ml.checks import DatasetInfo
from ml.data import LoadedDataset, prepare, split_indices
from ml.export import ExportContext, InputFormat, export_model
from ml.init import init_weights
from ml.models import build_model
from ml.spec import JobSpec

ATOL = 1e-5
UPLOAD = {"source": {"kind": "uploaded", "dataset_id": "d"}, "batch_size": 16}
MAP = {"op": "global_avg_pool"}


def _images(n: int = 48) -> LoadedDataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2, 9, 7)).astype(np.float32)
    return LoadedDataset(x, rng.integers(0, 3, n), DatasetInfo("classification", "image", n,
                                                               126, (2, 9, 7), 3))  # fmt: skip


def _tokens(n: int = 48, length: int = 10, vocab: int = 30) -> LoadedDataset:
    rng = np.random.default_rng(1)
    ids = rng.integers(2, vocab, (n, length))
    for i in range(n):  # padded tails of varying length, one text of padding only
        ids[i, rng.integers(1, length + 1) :] = 0
    ids[0, :] = 0
    info = DatasetInfo("classification", "text", n, 0, None, 2)
    return LoadedDataset(ids.astype(np.float32), rng.integers(0, 2, n), info)


def _rows(n: int = 48) -> LoadedDataset:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    return LoadedDataset(x, rng.normal(size=n).astype(np.float32),
                         DatasetInfo("regression", "tabular", n, 5, None, 0))  # fmt: skip


def _embed(*layers: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"op": "embedding", "output_dim": 8}, *layers]


IMAGE_CASES: dict[str, list[dict[str, Any]]] = {
    "conv2d-same-stride2": [{"op": "conv2d", "filters": 4, "kernel_size": 3, "strides": 2,
                             "padding": "same", "activation": "relu"}, MAP],
    "conv2d-dilated": [{"op": "conv2d", "filters": 3, "kernel_size": [3, 2],
                        "dilation_rate": 2}, MAP],
    "separable_conv2d": [{"op": "separable_conv2d", "filters": 5, "kernel_size": 3,
                          "strides": 2, "padding": "same", "depth_multiplier": 2}, MAP],
    "depthwise_conv2d": [{"op": "depthwise_conv2d", "kernel_size": 3, "padding": "same"}, MAP],
    "max_pool2d-same": [{"op": "max_pool2d", "pool_size": 2, "padding": "same"},
                        {"op": "flatten"}],
    "avg_pool2d-same": [{"op": "avg_pool2d", "pool_size": 3, "strides": 2, "padding": "same"},
                        {"op": "flatten"}],
    "avg_pool2d-valid": [{"op": "avg_pool2d", "pool_size": 2}, {"op": "global_max_pool"}],
    "batch_norm-layer_norm-image": [{"op": "batch_norm"}, {"op": "layer_norm"},
                                    {"op": "activation", "fn": "gelu"}, MAP],
    "add-concat-image": [{"op": "conv2d", "filters": 2, "padding": "same", "id": "a"},
                         {"op": "add", "inputs": ["input", "a"]},
                         {"op": "concat", "inputs": ["a", -1]}, MAP,
                         {"op": "dropout", "rate": 0.5},
                         {"op": "dense", "units": 4, "activation": "tanh"}],
}  # fmt: skip
TEXT_CASES: dict[str, list[dict[str, Any]]] = {
    "embedding-mean-over-time": _embed(MAP),
    "position_embedding-max-over-time": _embed({"op": "position_embedding"},
                                                {"op": "global_max_pool"}),
    "conv1d": _embed({"op": "conv1d", "filters": 4, "kernel_size": 3, "strides": 2,
                      "padding": "same"}, MAP),
    "lstm": _embed({"op": "lstm", "units": 6}),
    "gru-sequences": _embed({"op": "gru", "units": 5, "return_sequences": True}, MAP),
    "multi_head_attention": _embed({"op": "multi_head_attention", "num_heads": 2, "id": "att"},
                                   {"op": "add", "inputs": [-2, "att"]},
                                   {"op": "layer_norm"}, {"op": "batch_norm"},
                                   {"op": "dense", "units": 8, "activation": "relu"}, MAP),
    "transformer_encoder": _embed({"op": "position_embedding"},
                                  {"op": "transformer_encoder", "num_layers": 2, "num_heads": 2,
                                   "dropout": 0.1},
                                  {"op": "layer_norm"}, MAP),
    "transformer_encoder-relu-odd-heads": _embed({"op": "transformer_encoder", "num_heads": 1,
                                                  "intermediate_dim": 12, "activation": "relu"},
                                                 {"op": "global_max_pool"}),
}  # fmt: skip
ROW_CASES: dict[str, list[dict[str, Any]]] = {
    "dense-batch_norm-layer_norm-rows": [{"op": "dense", "units": 6}, {"op": "batch_norm"},
                                         {"op": "layer_norm"}, {"op": "activation", "fn": "silu"},
                                         {"op": "dense", "units": 3, "id": "b", "inputs": [-3]},
                                         {"op": "concat", "inputs": [-2, "b"]}],
}  # fmt: skip


def _case(name: str) -> tuple[list[dict[str, Any]], LoadedDataset, InputFormat]:
    if name in IMAGE_CASES:
        return IMAGE_CASES[name], _images(), InputFormat("NCHW", "float32")
    if name in TEXT_CASES:
        return TEXT_CASES[name], _tokens(), InputFormat("NL", "int64")
    return ROW_CASES[name], _rows(), InputFormat("NF", "float32")


@pytest.mark.parametrize("name", [*IMAGE_CASES, *TEXT_CASES, *ROW_CASES])
def test_every_op_exports_and_onnx_runtime_matches_pytorch(name: str) -> None:
    layers, ds, fmt = _case(name)
    model: dict[str, Any] = {"kind": "graph", "layers": layers}
    if ds.info.modality == "text":
        model |= {"vocab_size": 30, "max_length": 10}
    init = {"kind": "he_uniform", "bias": "framework_default"}
    spec = JobSpec.model_validate({"dataset": UPLOAD, "model": model, "seed": 0, "init": init})
    torch.manual_seed(0)
    net = build_model(spec, ds.info)
    init_weights(net, spec.init)
    net.eval()
    classification = ds.info.task == "classification"
    vocab = {f"t{i}": i for i in range(2, 30)} if ds.info.modality == "text" else None
    classes = ["a", "b", "c"][: ds.info.n_classes] if classification else None
    bundle = export_model(net, spec, ds, ExportContext("job", classes, None, fmt, False, vocab))

    data = prepare(spec, ds, torch.device("cpu"))
    assert data.x_val is not None
    with torch.no_grad():
        out = net(data.x_val)
    expected = (torch.softmax(out, 1) if classification else out[:, 0]).numpy()
    _, val = split_indices(ds, spec.dataset.validation_split, spec.seed)
    raw = ds.x[val].astype(fmt.dtype)
    session = ort.InferenceSession(bundle.onnx, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": raw})[0]
    assert got.shape == expected.shape
    assert float(np.max(np.abs(got - expected))) <= ATOL
    assert np.allclose(session.run(None, {"input": raw[:1]})[0], got[:1], atol=ATOL)

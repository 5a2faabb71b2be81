"""The mlp, cnn and text (pooling and transformer) shorthands expand to layer graphs and
train exactly as before the graph.

``_old_mlp`` / ``_old_cnn`` are the pre-graph builders of ml/models.py, copied verbatim
(commit 0d9fc00); ``_OldTextClassifier`` is ml/text_model.py's ``TextClassifier``, copied
verbatim (commit fa5aedb) when the text model became a graph: each run trains once with
them (patched into the trainer) and once with the graph, from the same seed; the weights,
parameter names and every metric point must agree to 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from torch import nn

import ml.embedding_front
from ml.architecture import TrainError, output_units
from ml.checks import DatasetInfo
from ml.data import LoadedDataset
from ml.engine import train
from ml.graph_model import ACTIVATIONS
from ml.graph_model import MapMean as GlobalAvgPool
from ml.sinks import MemoryCheckpointSink, MemoryMetricSink
from ml.spec import CNNModel, JobSpec, MLPModel, TextModel
from ml.text import PAD


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


def _old_mlp(model: MLPModel, info: DatasetInfo, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    prev = info.n_features if info.image_shape is None else _prod(info.image_shape)
    for units in model.hidden_units:
        layers.append(nn.Linear(prev, units))
        if model.normalization == "batch":
            layers.append(nn.BatchNorm1d(units))
        elif model.normalization == "layer":
            layers.append(nn.LayerNorm(units))
        layers.append(ACTIVATIONS[model.activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = units
    layers.append(nn.Linear(prev, output_units(info)))
    return nn.Sequential(*layers)


def _old_cnn(model: CNNModel, info: DatasetInfo, dropout: float) -> nn.Sequential:
    if info.image_shape is None:
        raise TrainError("model.kind 'cnn' needs image data; use 'mlp' for tabular data")
    c, h, w = info.image_shape
    k = model.kernel_size
    layers: list[nn.Module] = []
    for ch in model.channels:
        if model.separable:
            layers.append(nn.Conv2d(c, c, k, padding="same", groups=c, bias=False))
            layers.append(nn.Conv2d(c, ch, 1))
        else:
            layers.append(nn.Conv2d(c, ch, k, padding="same"))
        if model.normalization == "batch":
            layers.append(nn.BatchNorm2d(ch))
        elif model.normalization == "layer":
            layers.append(nn.GroupNorm(1, ch))  # layer norm over (C, H, W) per sample
        layers.append(ACTIVATIONS[model.activation]())
        # 2x2 max pooling while the map is big enough; a 1-pixel side is left alone.
        ph, pw = (2 if h >= 2 else 1), (2 if w >= 2 else 1)
        if ph * pw > 1:
            layers.append(nn.MaxPool2d((ph, pw)))
            h, w = h // ph, w // pw
        c = ch
    layers.append(GlobalAvgPool())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(c, output_units(info)))
    return nn.Sequential(*layers)


class _OldTextClassifier(nn.Module):
    def __init__(self, spec: TextModel, n_out: int, dropout: float) -> None:
        super().__init__()
        d = spec.embedding_dim
        self.embedding = nn.Embedding(spec.vocab_size, d, padding_idx=PAD)
        self.transformer = spec.encoder == "transformer"
        if self.transformer:
            if d % spec.num_heads:
                raise TrainError(
                    f"model.embedding_dim {d} must be a multiple of model.num_heads "
                    f"{spec.num_heads}"
                )
            self.position = nn.Embedding(spec.max_length, d)
            layer = nn.TransformerEncoderLayer(
                d, spec.num_heads, dim_feedforward=4 * d, dropout=dropout,
                activation="gelu", batch_first=True, norm_first=True,
            )  # fmt: skip
            self.encoder = nn.TransformerEncoder(layer, spec.num_layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(d, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x.long()
        mask = ids != PAD  # (B, L)
        h = self.embedding(ids)
        if self.transformer:
            positions = torch.arange(ids.shape[1], device=ids.device)
            h = h + self.position(positions)[None]
            # A row of padding only would attend to nothing (NaN): let it see position 0.
            padding = ~mask
            padding[:, 0] = padding[:, 0] & mask.any(dim=1)
            h = self.norm(self.encoder(h, src_key_padding_mask=padding))
        weights = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        out: torch.Tensor = self.head(self.dropout(pooled))
        return out


def _old_build_model(spec: JobSpec, info: DatasetInfo) -> nn.Module:
    if isinstance(spec.model, TextModel):
        return _OldTextClassifier(spec.model, output_units(info), spec.regularization.dropout)
    if isinstance(spec.model, MLPModel):
        return _old_mlp(spec.model, info, spec.regularization.dropout)
    assert isinstance(spec.model, CNNModel)
    return _old_cnn(spec.model, info, spec.regularization.dropout)


SYNTH_IMG = {"kind": "builtin", "name": "synthetic",
             "synthetic": {"n_samples": 160, "n_classes": 3, "image_shape": [2, 7, 6]}}  # fmt: skip
CASES = {
    "mlp_batch_dropout": {
        "dataset": {"source": {"kind": "builtin", "name": "wine"}, "batch_size": 16},
        "model": {"kind": "mlp", "hidden_units": [16, 8], "normalization": "batch",
                  "activation": "gelu"},
        "regularization": {"dropout": 0.2, "l2": 1e-3},
        "init": {"kind": "he_uniform"},
    },
    "mlp_layer_regression": {
        "dataset": {"source": {"kind": "builtin", "name": "diabetes"}, "batch_size": 32},
        "model": {"kind": "mlp", "hidden_units": [12], "normalization": "layer"},
        "optimizer": {"kind": "rmsprop", "lr": 0.01},
    },
    "cnn_batch": {
        "dataset": {"source": SYNTH_IMG, "batch_size": 32},
        "model": {"kind": "cnn", "channels": [4, 6], "normalization": "batch"},
        "regularization": {"dropout": 0.3, "weight_decay": 1e-3},
        "optimizer": {"kind": "adamw", "lr": 0.01},
    },
    "cnn_separable_layer_norm": {
        "dataset": {"source": SYNTH_IMG, "batch_size": 32},
        "model": {"kind": "cnn", "channels": [3, 5], "separable": True, "kernel_size": 2,
                  "normalization": "layer", "activation": "silu"},
        "init": {"kind": "xavier_normal"},
    },
}  # fmt: skip


def _tokens(n: int = 160, length: int = 10, vocab: int = 40) -> LoadedDataset:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, n)
    ids = rng.integers(2, vocab, (n, length))
    ids[y == 1, 0] = 3
    for i in range(n):  # padded tails of varying length, one text of padding only
        ids[i, rng.integers(2, length + 1) :] = 0
    ids[0, :] = 0
    info = DatasetInfo("classification", "text", n, 0, None, 2)
    return LoadedDataset(ids.astype(np.float32), y, info)


TEXT = {"kind": "text", "embedding_dim": 8, "max_length": 10, "vocab_size": 40}
UPLOAD = {"source": {"kind": "uploaded", "dataset_id": "d"}, "batch_size": 16}
CASES["text_pooling"] = {"dataset": UPLOAD, "model": TEXT}
CASES["text_pooling_dropout_l2"] = {"dataset": UPLOAD, "model": TEXT,
                                    "regularization": {"dropout": 0.3, "l2": 1e-3}}  # fmt: skip
ENCODER = {**TEXT, "encoder": "transformer", "num_heads": 2}
CASES["text_transformer"] = {"dataset": UPLOAD, "model": ENCODER}
CASES["text_transformer_2_layers_dropout_l2"] = {
    "dataset": UPLOAD, "model": {**ENCODER, "num_layers": 2},
    "regularization": {"dropout": 0.2, "l2": 1e-3, "weight_decay": 1e-2},
    "optimizer": {"kind": "adamw", "lr": 0.01}, "init": {"kind": "he_normal"},
}  # fmt: skip


def _run(body: dict, monkeypatch: pytest.MonkeyPatch | None) -> tuple[dict, list]:
    spec = JobSpec.model_validate(body | {"epochs": 3, "seed": 11, "deterministic": True})
    metrics, checkpoints = MemoryMetricSink(), MemoryCheckpointSink()
    built: list[nn.Module] = []

    def old_build_model(spec: JobSpec, info: DatasetInfo) -> nn.Module:
        built.append(_old_build_model(spec, info))
        return built[-1]

    if monkeypatch is not None:
        monkeypatch.setattr(ml.embedding_front, "build_model", old_build_model)
    dataset = _tokens() if isinstance(spec.model, TextModel) else None
    train(spec, metrics=metrics, checkpoints=checkpoints, dataset=dataset)
    if monkeypatch is not None:
        monkeypatch.undo()
        assert built, "the trainer did not build the reference model"
    weights = st_load(checkpoints.saved[-1][0].weights)
    points = [p for p in metrics.points if p[0] not in ("epoch_seconds", "samples_per_second")]
    return weights, points


@pytest.mark.parametrize("case", sorted(CASES))
def test_shorthand_trains_exactly_as_the_pre_graph_builder(case, monkeypatch):
    old_weights, old_points = _run(CASES[case], monkeypatch)
    new_weights, new_points = _run(CASES[case], None)
    assert sorted(new_weights) == sorted(old_weights)  # same names: old checkpoints load
    for name, tensor in old_weights.items():
        torch.testing.assert_close(new_weights[name], tensor, rtol=0, atol=1e-6)
    assert [p[:3] for p in new_points] == [p[:3] for p in old_points]
    for new, old in zip(new_points, old_points, strict=True):
        assert new[3] == pytest.approx(old[3], abs=1e-6), new[:3]


@pytest.mark.parametrize("encoder", ["pooling", "transformer"])
def test_an_old_text_checkpoint_loads_and_predicts_as_before(encoder):
    model = {**ENCODER, "encoder": encoder, "num_layers": 2}
    body = {"dataset": UPLOAD, "model": model, "regularization": {"dropout": 0.1}}
    spec = JobSpec.model_validate(body)
    data = _tokens(n=12)
    torch.manual_seed(3)
    old = _old_build_model(spec, data.info).eval()
    new = ml.embedding_front.build_model(spec, data.info).eval()
    new.load_state_dict(old.state_dict(), strict=True)  # every name and shape as before
    x = torch.from_numpy(data.x)  # a text of padding only among them
    with torch.no_grad():  # inference: PyTorch's fast path of the encoder
        torch.testing.assert_close(new(x), old(x), rtol=0, atol=1e-6)
    new.train()
    old.train()
    torch.manual_seed(4)
    expected = old(x)  # dropout draws in the same order
    torch.manual_seed(4)
    torch.testing.assert_close(new(x), expected, rtol=0, atol=1e-6)

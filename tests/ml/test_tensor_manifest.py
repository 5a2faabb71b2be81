"""ml.tensor_manifest (torch-free) against the built model of every model kind: the same
state_dict names, shapes and parameter/buffer split; the safetensors header parser
against safetensors' own files."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from safetensors.torch import save as st_save

from ml.checks import DatasetInfo
from ml.models import build_model
from ml.spec import JobSpec
from ml.tensor_manifest import HeaderError, safetensors_shapes, spec_tensors

TABLE = DatasetInfo("classification", "tabular", 64, 5, None, 3)
REGRESSION = DatasetInfo("regression", "tabular", 64, 5, None, 0)
IMAGE = DatasetInfo("classification", "image", 64, 3 * 8 * 8, (3, 8, 8), 4)
TEXT = DatasetInfo("classification", "text", 64, 0, None, 2)
SYNTH = {"source": {"kind": "builtin", "name": "iris"}}

KINDS: list[tuple[dict[str, Any], DatasetInfo]] = [
    ({"kind": "mlp", "hidden_units": [8, 4], "normalization": "batch"}, TABLE),
    ({"kind": "mlp", "hidden_units": [6], "normalization": "layer"}, REGRESSION),
    ({"kind": "cnn", "channels": [4, 6], "normalization": "batch", "separable": True}, IMAGE),
    ({"kind": "resnet", "width": 4, "depth": 2}, IMAGE),
    (
        {
            "kind": "transformer",
            "width": 8,
            "num_heads": 2,
            "num_layers": 1,
            "vocab_size": 30,
            "max_length": 6,
        },
        TEXT,
    ),
    (
        {
            "kind": "text",
            "encoder": "pooling",
            "vocab_size": 30,
            "max_length": 6,
            "embedding_dim": 4,
        },
        TEXT,
    ),
    (
        {
            "kind": "text",
            "encoder": "transformer",
            "vocab_size": 30,
            "max_length": 6,
            "embedding_dim": 8,
            "num_heads": 2,
            "num_layers": 2,
        },
        TEXT,
    ),
]


@pytest.mark.parametrize(("model", "info"), KINDS, ids=[m["kind"] for m, _ in KINDS])
def test_the_manifest_is_the_built_models_state_dict(model: dict[str, Any], info: DatasetInfo):
    spec = JobSpec.model_validate({"dataset": SYNTH, "model": model,
                                   "regularization": {"dropout": 0.1}})  # fmt: skip
    net = build_model(spec, info)
    params = [name for name, _ in net.named_parameters()]
    built = {k: (tuple(v.shape), k in params) for k, v in net.state_dict().items()}
    manifest = spec_tensors(spec, info)
    assert manifest is not None
    assert {k: (e.shape, e.parameter) for k, e in manifest.items()} == built
    assert list(manifest) == list(built)  # in the state_dict's order too


def test_safetensors_header_shapes() -> None:
    data = st_save({"a.weight": torch.zeros(3, 2), "n": torch.tensor(4), "b": torch.ones(5)})
    assert safetensors_shapes(data) == {"a.weight": (3, 2), "n": (), "b": (5,)}
    with pytest.raises(HeaderError):
        safetensors_shapes(data[:20])
    with pytest.raises(HeaderError):
        safetensors_shapes(b"\x01")

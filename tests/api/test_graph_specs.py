"""A graph spec: every bad graph is a 422 at the layer, all problems at once, before anything
is queued; `plan.layers` lists the built model's layers and adds up (issue 23)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import FakeQueue

DIGITS = {"source": {"kind": "builtin", "name": "digits"}}  # 1×8×8 images, 10 classes
IRIS = {"source": {"kind": "builtin", "name": "iris"}}  # 4 features, 3 classes
POOL = {"op": "global_avg_pool"}


def graph(layers: list[dict[str, Any]], dataset: dict[str, Any] = DIGITS) -> dict[str, Any]:
    return {"dataset": dataset, "model": {"kind": "graph", "layers": layers}}


RESIDUAL = [
    {"op": "conv2d", "filters": 16, "kernel_size": 3, "padding": "same", "id": "stem"},
    {"op": "batch_norm"},
    {"op": "activation", "fn": "relu"},
    {"op": "conv2d", "filters": 16, "kernel_size": 3, "padding": "same"},
    {"op": "batch_norm"},
    {"op": "add", "inputs": ["stem", -1]},
    {"op": "activation", "fn": "relu"},
    {"op": "global_avg_pool"},
    {"op": "dropout", "rate": 0.2},
]

BAD = [
    (graph([{"op": "conv2d", "filters": 32, "kernel_size": 3, "padding": "same", "id": "a"},
            {"op": "conv2d", "filters": 16, "kernel_size": 3, "padding": "same"},
            {"op": "add", "inputs": ["a", -1]}, POOL]),
     "spec.model.layers.2", "32×8×8 and 16×8×8"),
    (graph([{"op": "max_pool2d", "pool_size": 4},
            {"op": "conv2d", "filters": 4, "kernel_size": 3}, POOL]),
     "spec.model.layers.1", "shrink 2×2 to 0×0"),
    (graph([{"op": "conv2d", "filters": 4}, POOL], IRIS),
     "spec.model.layers.0", "4 features (tabular rows"),
    (graph([{"op": "conv2d", "filters": 4}, {"op": "add", "inputs": ["nope", -1]}, POOL]),
     "spec.model.layers.1.inputs.0", "no earlier layer has id 'nope'"),
    (graph([{"op": "conv2d", "filters": 4, "padding": "same"},
            {"op": "add", "inputs": ["late", -1]},
            {"op": "conv2d", "filters": 4, "padding": "same", "id": "late"}, POOL]),
     "spec.model.layers.1.inputs.0", "layer 2, a later layer"),
    (graph([{"op": "conv2d", "filters": 4, "id": "x"}, {"op": "batch_norm", "id": "x"}, POOL]),
     "spec.model.layers.1.id", "already layer 0's"),
    (graph([{"op": "conv2d", "filters": 4, "id": "a"},
            {"op": "conv2d", "filters": 4, "inputs": ["input"]}, POOL]),
     "spec.model.layers.0", "never read"),
    (graph([{"op": "dropout", "rate": 0.1}] * 257 + [{"op": "flatten"}]),
     "spec.model.layers", "at most 256"),
    (graph([{"op": "conv2d", "filters": 4}]),
     "spec.model.layers.0", "global_avg_pool, global_max_pool or flatten"),
    (graph([{"op": "dense", "units": 4}], DIGITS),
     "spec.model.layers.0", "pool or flatten it first"),
    (graph([{"op": "transformer_encoder", "num_heads": 2}, POOL], DIGITS),
     "spec.model.layers.0", "transformer_encoder needs a sequence (length×features) and gets "
     "an image 1×8×8"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "loc", "words"), BAD)
def test_a_bad_graph_is_a_422_at_the_layer(
    client: TestClient, fake_queue: FakeQueue, spec: dict[str, Any], loc: str, words: str
) -> None:
    for path in ("/v1/specs/validate", "/v1/jobs"):
        r = client.post(path, json={"spec": spec})
        assert r.status_code == 422, r.text
        errors = r.json()["errors"]
        assert any(e["loc"] == loc and words in e["msg"] for e in errors), errors
    assert fake_queue.published == []


def test_every_problem_of_a_graph_is_reported_at_once(client: TestClient) -> None:
    spec = graph([
        {"op": "conv2d", "filters": 8, "kernel_size": 9},  # 8×8 shrinks to 0×0
        {"op": "batch_norm", "id": "n"},
        {"op": "batch_norm", "id": "n"},  # duplicate id
        {"op": "add", "inputs": ["ghost", -1]},  # unknown id
        {"op": "dense", "units": 3, "inputs": ["input"]},  # on an image
    ])  # fmt: skip
    r = client.post("/v1/specs/validate", json={"spec": spec})
    assert r.status_code == 422, r.text
    locs = {e["loc"] for e in r.json()["errors"]}
    assert {"spec.model.layers.0", "spec.model.layers.2.id", "spec.model.layers.3.inputs.0",
            "spec.model.layers.4"} <= locs  # fmt: skip


def test_plan_layers_list_the_model_and_add_up(client: TestClient) -> None:
    r = client.post("/v1/specs/validate", json={"spec": graph(RESIDUAL)})
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    layers = plan["layers"]
    assert [la["op"] for la in layers] == [la["op"] for la in RESIDUAL] + ["dense"]
    assert [la["index"] for la in layers] == list(range(len(RESIDUAL) + 1))
    assert layers[0] == {"index": 0, "id": "stem", "op": "conv2d", "output_shape": [16, 8, 8],
                         "parameter_count": 1 * 16 * 9 + 16}  # fmt: skip
    assert layers[5]["output_shape"] == [16, 8, 8]
    assert layers[-1] == {"index": 9, "id": "head", "op": "dense", "output_shape": [10],
                          "parameter_count": 16 * 10 + 10}  # fmt: skip
    assert sum(la["parameter_count"] for la in layers) == plan["parameter_count"]
    assert plan["parameter_count"] == (16 * 9 + 16) + 32 + (16 * 16 * 9 + 16) + 32 + 170


def test_shorthands_list_their_graph_in_the_plan(client: TestClient) -> None:
    r = client.post("/v1/specs/validate", json={"spec": {"dataset": DIGITS,
                                                         "model": {"kind": "cnn"}}})  # fmt: skip
    plan = r.json()["plan"]
    ops = [la["op"] for la in plan["layers"]]
    assert ops[:4] == ["conv2d", "batch_norm", "activation", "max_pool2d"]
    assert ops[-2:] == ["global_avg_pool", "dense"]
    assert sum(la["parameter_count"] for la in plan["layers"]) == plan["parameter_count"]


def test_dropout_of_the_regularization_part_is_refused_for_a_graph(client: TestClient) -> None:
    spec = graph(RESIDUAL) | {"regularization": {"dropout": 0.3}}
    r = client.post("/v1/specs/validate", json={"spec": spec})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == "spec.regularization.dropout"


def test_layers_after_a_bad_add_are_still_checked(client: TestClient) -> None:
    spec = graph([
        {"op": "conv2d", "filters": 32, "padding": "same", "id": "a"},
        {"op": "conv2d", "filters": 16, "padding": "same"},
        {"op": "add", "inputs": ["a", -1]},
        {"op": "max_pool2d", "pool_size": 4},
        {"op": "conv2d", "filters": 4, "kernel_size": 3},
        POOL,
    ])  # fmt: skip
    r = client.post("/v1/specs/validate", json={"spec": spec})
    assert r.status_code == 422
    errors = [(e["loc"], e["msg"]) for e in r.json()["errors"]]
    assert [loc for loc, _ in errors] == ["spec.model.layers.2", "spec.model.layers.4"]
    assert "shrink 2×2 to 0×0" in errors[1][1]

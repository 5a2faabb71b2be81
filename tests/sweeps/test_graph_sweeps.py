"""Sweeps over a graph layer's parameters (`model.layers.3.filters`): accepted, checked
against the layer's bounds and its shapes before anything is queued (issue 23)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from api.sweeps.space import field_kind, trial_spec
from ml.spec import JobSpec
from tests.conftest import FakeQueue

GRAPH: dict[str, Any] = {
    "dataset": {"source": {"kind": "builtin", "name": "digits"}},
    "model": {"kind": "graph", "layers": [
        {"op": "conv2d", "filters": 8, "padding": "same"},
        {"op": "max_pool2d"},
        {"op": "conv2d", "filters": 8, "kernel_size": 3},
        {"op": "conv2d", "filters": 8, "padding": "same"},
        {"op": "global_avg_pool"},
    ]},
    "epochs": 1,
}  # fmt: skip
FILTERS = 'parameters["model.layers.3.filters"]'


def test_a_layer_parameter_is_a_path_and_each_trial_sets_it():
    spec = JobSpec.model_validate(GRAPH)
    assert field_kind(spec, "model.layers.3.filters") == "int"
    assert field_kind(spec, "model.layers.9.filters") is None
    assert field_kind(spec, "model.layers.1.filters") is None  # a max_pool2d has none
    trial = trial_spec(spec.model_dump(mode="json"), {"model.layers.3.filters": 24})
    assert trial.model.layers[3].filters == 24  # type: ignore[union-attr]
    assert trial.model.layers[0].filters == 8  # type: ignore[union-attr]


def test_a_sweep_over_filters_is_accepted(client: TestClient, fake_queue: FakeQueue) -> None:
    body = {"spec": GRAPH, "parameters": {
        "model.layers.3.filters": {"kind": "choice", "values": [8, 16, 32]}}}  # fmt: skip
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text


def test_bad_layer_values_are_a_422_at_the_parameter(client: TestClient) -> None:
    # filters 0 is outside the field's bounds; layer 7 does not exist
    body = {"spec": GRAPH, "parameters": {
        "model.layers.3.filters": {"kind": "choice", "values": [8, 0]},
        "model.layers.7.filters": {"kind": "choice", "values": [8]},
    }}  # fmt: skip
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 422, r.text
    errors = {e["loc"]: e for e in r.json()["errors"]}
    assert errors[f"{FILTERS}.values[1]"]["type"] == "invalid_value"
    assert errors['parameters["model.layers.7.filters"]']["type"] == "unknown_path"


def test_a_value_that_breaks_the_shapes_is_a_422_at_the_parameter(client: TestClient) -> None:
    # kernel 5 with 'valid' padding shrinks the 4×4 map (after the pooling) to 0×0
    body = {"spec": GRAPH, "parameters": {
        "model.layers.2.kernel_size": {"kind": "choice", "values": [3, 5]}}}  # fmt: skip
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["loc"] == 'parameters["model.layers.2.kernel_size"].values[1]', error
    assert error["type"] == "graph_shape" and "shrink 4×4 to 0×0" in error["msg"]

"""A sweep's objective can be an extra metric of spec.metrics, in its own direction."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import FakeQueue

LR = {"optimizer.lr": {"kind": "choice", "values": [0.01, 0.001]}}


def spec(name: str, **rest: Any) -> dict[str, Any]:
    return {"dataset": {"source": {"kind": "builtin", "name": name}}, "epochs": 2, **rest}


@pytest.mark.parametrize(
    ("name", "metric", "mode"),
    [("iris", "val_f1_macro", "max"), ("diabetes", "val_mae", "min"), ("diabetes", "r2", "max")],
)
def test_an_extra_metric_is_an_objective_with_its_direction(
    client: TestClient, fake_queue: FakeQueue, name: str, metric: str, mode: str
) -> None:
    body = {
        "spec": spec(name, metrics=[metric.removeprefix("val_")]),
        "parameters": LR,
        "objective": {"metric": metric},
    }
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["objective"] == {"metric": metric, "mode": mode}


def test_an_objective_missing_from_spec_metrics_is_a_422_that_says_so(client: TestClient) -> None:
    body = {"spec": spec("iris"), "parameters": LR, "objective": {"metric": "val_auroc"}}
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 422, r.text
    [error] = [e for e in r.json()["errors"] if e["loc"] == "objective.metric"]
    assert error["type"] == "objective_not_produced"
    assert "'auroc' in spec.metrics" in error["msg"]

"""POST /v1/specs/validate and /v1/jobs: extra metrics, their monitors and class weights
are 422s at their spec locations (problem+json), and a valid spec resolves them."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

IRIS = {"source": {"kind": "builtin", "name": "iris"}}


def problems(client: TestClient, spec: dict[str, Any]) -> dict[str, str]:
    r = client.post("/v1/specs/validate", json={"spec": spec})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return {e["loc"]: e["type"] for e in r.json()["errors"]}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"dataset": IRIS, "metrics": ["f1_macro", "r2"]},
         {"spec.metrics.1": "metric_task_mismatch"}),
        ({"dataset": IRIS, "metrics": ["f1"]}, {"spec.metrics.0": "string_pattern_mismatch"}),
        ({"dataset": IRIS, "early_stopping": {"monitor": "val_auroc"}},
         {"spec.early_stopping.monitor": "monitor_not_in_metrics"}),
        ({"dataset": IRIS, "loss": {"class_weight": {"7": 2.0}}},
         {"spec.loss.class_weight.7": "class_weight_unknown_class"}),
    ],
)  # fmt: skip
def test_problems_are_named_at_their_location(
    client: TestClient, spec: dict[str, Any], expected: dict[str, str]
) -> None:
    assert problems(client, spec) == expected


def test_a_valid_spec_resolves_its_metrics_and_class_weights(client: TestClient) -> None:
    spec = {
        "dataset": IRIS,
        "metrics": ["f1_macro", "auroc"],
        "loss": {"class_weight": "balanced"},
        "checkpointing": {"monitor": "val_auroc"},
    }
    r = client.post("/v1/specs/validate", json={"spec": spec})
    assert r.status_code == 200, r.text
    resolved = r.json()["spec"]
    assert resolved["metrics"] == ["f1_macro", "auroc"]
    assert resolved["loss"] == {"kind": "auto", "class_weight": "balanced"}
    legacy = client.post("/v1/specs/validate", json={"spec": {"dataset": IRIS, "loss": "auto"}})
    assert legacy.status_code == 200 and legacy.json()["spec"]["loss"] == "auto"

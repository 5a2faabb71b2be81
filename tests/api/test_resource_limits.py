"""Refuse what cannot run (issue 18, item 5): parameters and estimated training memory
above the operator's limits are a 422 naming the field, on validation and on submission,
and nothing is queued; the runtime ceiling is a 422 and the default a job gets."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.settings import Settings
from tests.api.test_datasets import text_csv, uploaded
from tests.conftest import FakeQueue

DIGITS = {"source": {"kind": "builtin", "name": "digits"}}


def synthetic(**opts: Any) -> dict[str, Any]:
    return {"source": {"kind": "builtin", "name": "synthetic", "synthetic": opts}}


HUGE = [
    # 65536 x 65536 hidden layers: 4.3e9 parameters
    ({"dataset": DIGITS, "model": {"kind": "mlp", "hidden_units": [65536, 65536]}},
     "spec.model", "too_many_parameters"),
    # 64 such layers: 2.7e11
    ({"dataset": DIGITS, "model": {"kind": "mlp", "hidden_units": [65536] * 64}},
     "spec.model", "too_many_parameters"),
    # a cnn with 4096 channels and k=15
    ({"dataset": DIGITS, "model": {"kind": "cnn", "channels": [4096, 4096], "kernel_size": 15}},
     "spec.model", "too_many_parameters"),
    # 10^7 samples x 10^5 features: 4 TB of float32
    ({"dataset": synthetic(n_samples=10_000_000, n_features=100_000)},
     "spec.dataset.source.synthetic", "job_memory_exceeded"),
    # huge synthetic images within the per-side bound: the dataset, not the model
    ({"dataset": synthetic(n_samples=100_000, image_shape=[3, 4096, 4096])},
     "spec.dataset.source.synthetic", "job_memory_exceeded"),
    # activations: a wide cnn on big images at a big batch
    ({"dataset": {**synthetic(n_samples=64, image_shape=[3, 1024, 1024]), "batch_size": 64},
      "model": {"kind": "cnn", "channels": [256]}},
     "spec.dataset.batch_size", "job_memory_exceeded"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "loc", "type_"), HUGE)
def test_what_cannot_run_is_refused_with_the_field(
    client: TestClient, fake_queue: FakeQueue, spec: dict[str, Any], loc: str, type_: str
) -> None:
    for path in ("/v1/specs/validate", "/v1/jobs"):
        r = client.post(path, json={"spec": spec})
        assert r.status_code == 422, r.text
        errors = r.json()["errors"]
        assert any(e["loc"] == loc and e["type"] == type_ for e in errors), errors
    assert client.get("/v1/jobs").json()["items"] == []
    assert fake_queue.published == []


def test_a_synthetic_shape_of_2_31_is_refused(client: TestClient) -> None:
    spec = {"dataset": synthetic(image_shape=[1, 2**31, 2**31])}
    r = client.post("/v1/jobs", json={"spec": spec})
    assert r.status_code == 422, r.text
    assert any("image_shape" in e["loc"] for e in r.json()["errors"])


def test_a_text_vocabulary_of_a_million_by_4096_is_refused(client: TestClient) -> None:
    ds = uploaded(client, text_csv(), "text_csv", text_column="review", label_column="sentiment")
    source = {"kind": "uploaded", "dataset_id": ds["id"]}
    model = {"kind": "text", "vocab_size": 1_000_000, "embedding_dim": 4096}
    r = client.post("/v1/jobs", json={"spec": {"dataset": {"source": source}, "model": model}})
    assert r.status_code == 422, r.text
    assert any(e["type"] == "too_many_parameters" for e in r.json()["errors"])


def test_validation_reports_the_estimate_and_a_normal_job_passes(client: TestClient) -> None:
    r = client.post("/v1/specs/validate", json={"spec": {"dataset": DIGITS}})
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    assert 0 < plan["estimated_memory_bytes"] < 2**30


def test_the_limits_are_operator_settings(settings: Settings, client: TestClient) -> None:
    settings.max_parameters = 1000  # the app reads the same Settings object
    r = client.post("/v1/jobs", json={"spec": {"dataset": DIGITS}})
    assert r.status_code == 422
    assert "TRAINFORGE_MAX_PARAMETERS" in r.json()["errors"][0]["msg"]
    settings.max_parameters, settings.max_job_memory_bytes = 10**9, 2**20
    spec = {"dataset": synthetic(n_samples=10_000, n_features=100)}  # 8 MB of float32, twice
    r = client.post("/v1/jobs", json={"spec": spec})
    assert r.status_code == 422
    assert "TRAINFORGE_MAX_JOB_MEMORY_BYTES" in r.json()["errors"][0]["msg"]


def test_runtime_ceiling_and_default(settings: Settings, client: TestClient) -> None:
    settings.max_runtime_seconds = 3600
    r = client.post(
        "/v1/jobs", json={"spec": {"dataset": DIGITS, "limits": {"max_runtime_seconds": 7200}}}
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == "spec.limits.max_runtime_seconds"
    r = client.post("/v1/jobs", json={"spec": {"dataset": DIGITS}})
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["limits"]["max_runtime_seconds"] == 3600
    r = client.post(
        "/v1/jobs", json={"spec": {"dataset": DIGITS, "limits": {"max_runtime_seconds": 60}}}
    )
    assert r.json()["spec"]["limits"]["max_runtime_seconds"] == 60

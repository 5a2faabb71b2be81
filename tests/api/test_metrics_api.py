"""GET /v1/jobs/{id}/metrics: filters, non-finite values as strings, server-side downsampling."""

from __future__ import annotations

import math
import time

import pytest
from fastapi.testclient import TestClient

from api.db.session import session_factory
from api.ledger import metrics as metrics_repo
from api.ledger import repository as repo
from api.settings import Settings
from tests.worker.test_metric_sink import running_job

NAN_INF = [("loss", 1, 0.5), ("loss", 2, math.nan), ("loss", 3, math.inf), ("loss", 4, -math.inf)]


def submit(client: TestClient) -> str:
    spec = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 2}
    r = client.post("/v1/jobs", json={"spec": spec})
    assert r.status_code == 201, r.text
    job_id: str = r.json()["id"]
    return job_id


def test_non_finite_values_are_strings_and_filters_apply(
    client: TestClient, settings: Settings
) -> None:
    job_id = submit(client)
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        assert repo.claim_job(s, job_id, 30) == 1
        points = [metrics_repo.Point(n, step, 0, v) for n, step, v in NAN_INF]
        points += [metrics_repo.Point("val_accuracy", step, 0, 0.1 * step) for step in (2, 4)]
        metrics_repo.write_metrics(s, job_id, 1, points)
        s.commit()
    r = client.get(f"/v1/jobs/{job_id}/metrics")
    assert r.status_code == 200
    assert "NaN" in r.text and "Infinity" in r.text
    body = r.json()  # strict JSON: would fail on a bare NaN token
    by_name = {s["name"]: s for s in body["series"]}
    assert [p["value"] for p in by_name["loss"]["points"]] == [0.5, "NaN", "Infinity", "-Infinity"]
    assert by_name["loss"]["downsampled"] is False
    only = client.get(
        f"/v1/jobs/{job_id}/metrics", params={"name": ["val_accuracy"], "since_step": 3}
    ).json()
    assert only["series"] == [
        {
            "name": "val_accuracy",
            "points": [{"step": 4, "epoch": 0, "value": 0.4}],
            "downsampled": False,
        }
    ]
    both = client.get(f"/v1/jobs/{job_id}/metrics", params=[("name", "loss"), ("name", "nope")])
    assert [s["name"] for s in both.json()["series"]] == ["loss"]


def test_bad_parameters_and_other_jobs_are_problems(client: TestClient) -> None:
    job_id = submit(client)
    for params in ({"max_points": 2}, {"since_step": -1}, {"max_points": "many"}):
        r = client.get(f"/v1/jobs/{job_id}/metrics", params=params)
        assert r.status_code == 422, params
        assert r.headers["content-type"].startswith("application/problem+json")
    r = client.get("/v1/jobs/nope/metrics")
    assert r.status_code == 404 and r.json()["status"] == 404


@pytest.mark.slow
def test_a_million_point_series_charts_in_one_request(
    client: TestClient, settings: Settings
) -> None:
    n = 1_000_000
    factory = session_factory(settings.resolved_database_url)
    job_id = running_job(factory)
    with factory() as s:
        # Straight through the driver: this test is about reading, not the sink.
        s.connection().exec_driver_sql(
            "INSERT INTO metric_points (job_id, name, step, epoch, value, attempt) "
            "VALUES (?, 'loss', ?, ?, ?, 1)",
            [
                (job_id, step, step // 1000, 100.0 if step == 777_777 else math.cos(step / 1e4))
                for step in range(1, n + 1)
            ],
        )
        s.commit()
    start = time.perf_counter()
    r = client.get(f"/v1/jobs/{job_id}/metrics", params={"max_points": 2000})
    took = time.perf_counter() - start
    assert r.status_code == 200
    (series,) = r.json()["series"]
    points = series["points"]
    assert series["downsampled"] is True and len(points) <= 2000
    steps = [p["step"] for p in points]
    assert steps == sorted(steps) and steps[0] == 1 and steps[-1] == n
    assert max(p["value"] for p in points) == 100.0  # the one spike survives
    assert min(p["value"] for p in points) == pytest.approx(-1.0, abs=1e-6)
    assert took < 30, f"{took:.1f}s"
    print(f"1M points → {len(points)} in {took:.2f}s")

"""GET /v1/jobs/{id}/report: the best checkpoint's confusion matrix and per-class scores
agree with the validation metrics logged at that checkpoint's epoch (and scikit-learn)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import f1_score, precision_recall_fscore_support

from api.settings import Settings
from worker.runner import run_job


def submit_and_run(client: TestClient, settings: Settings, body: dict[str, Any]) -> str:
    r = client.post("/v1/jobs", json={"spec": body})
    assert r.status_code == 201, r.text
    run_job(r.json()["id"], settings)
    return str(r.json()["id"])


def labels_from(matrix: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_pred) that give this confusion matrix."""
    pairs = [(t, p) for t, row in enumerate(matrix) for p, n in enumerate(row) for _ in range(n)]
    y = np.array(pairs)
    return y[:, 0], y[:, 1]


def test_the_report_agrees_with_the_logged_validation_metrics_of_the_best_checkpoint(
    client: TestClient, settings: Settings
) -> None:
    body = {
        "dataset": {"source": {"kind": "builtin", "name": "wine"}, "batch_size": 16},
        "model": {"kind": "mlp", "hidden_units": [8]},
        "optimizer": {"kind": "sgd", "lr": 0.01},
        "epochs": 4,
        "metrics": ["f1_macro", "recall_weighted"],
        "checkpointing": {"monitor": "val_f1_macro", "keep_best": 1, "keep_last": 1},
    }
    job_id = submit_and_run(client, settings, body)
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
    r = client.get(f"/v1/jobs/{job_id}/report")
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["classes"] == ["class_0", "class_1", "class_2"]
    matrix = report["confusion_matrix"]
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert report["n_samples"] == sum(map(sum, matrix)) == 36  # ceil(178 * 0.2)
    [best] = [c for c in client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"]
              if c["is_best"]]  # fmt: skip
    assert report["checkpoint"]["is_best"] and report["checkpoint"]["id"] == best["id"]
    logged = best["metrics"]
    y_true, y_pred = labels_from(matrix)
    assert report["accuracy"] == pytest.approx(logged["val_accuracy"], abs=1e-9)
    assert f1_score(y_true, y_pred, average="macro") == pytest.approx(
        logged["val_f1_macro"], abs=1e-6
    )
    p, rc, f, s = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    for i, row in enumerate(report["per_class"]):
        assert row["class"] == f"class_{i}" and row["support"] == s[i] == sum(matrix[i])
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((p[i], rc[i], f[i]))
    weighted = sum(c["recall"] * c["support"] for c in report["per_class"]) / report["n_samples"]
    assert weighted == pytest.approx(logged["val_recall_weighted"], abs=1e-6)


def test_a_regression_has_no_report_and_the_409_says_why(
    client: TestClient, settings: Settings
) -> None:
    body = {"dataset": {"source": {"kind": "builtin", "name": "diabetes"}}, "epochs": 1}
    job_id = submit_and_run(client, settings, body)
    r = client.get(f"/v1/jobs/{job_id}/report")
    assert r.status_code == 409
    assert "classification" in r.json()["detail"]


def test_a_queued_job_has_no_report_yet_and_an_unknown_job_is_a_404(client: TestClient) -> None:
    r = client.post(
        "/v1/jobs", json={"spec": {"dataset": {"source": {"kind": "builtin", "name": "iris"}}}}
    )
    report = client.get(f"/v1/jobs/{r.json()['id']}/report")
    assert report.status_code == 409 and "queued" in report.json()["detail"]
    assert client.get("/v1/jobs/nope/report").status_code == 404


def test_the_cli_prints_the_report_and_a_missing_one_is_a_one_line_error(
    client: TestClient,
    settings: Settings,
    admin_key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from trainforge.client import app as cli_app
    from trainforge.client import report_cmd
    from trainforge.client.config import Config
    from trainforge.client.http import Api

    config = Config(url="http://testserver", api_key=admin_key, key_source="test")
    monkeypatch.setattr(report_cmd, "connect", lambda: Api(config, transport=client._transport))
    body = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 1}
    job_id = submit_and_run(client, settings, body)
    assert cli_app.main(["report", job_id]) == 0
    out = capsys.readouterr().out
    assert "30 validation samples" in out and "setosa" in out and "true \\ predicted" in out
    assert cli_app.main(["report", job_id, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == client.get(f"/v1/jobs/{job_id}/report").json()
    queued = client.post("/v1/jobs", json={"spec": body}).json()["id"]
    assert cli_app.main(["report", queued]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trainforge: ") and "queued" in err and "Traceback" not in err

"""The worker exports every trained job; the API serves the bundle and predicts with it.

Each job runs in-process (``run_job`` on SQLite) behind the TestClient, as the other
worker tests do. Accuracy of ``/predict`` on the job's own validation rows, sent raw
as the upload holds them, equals the job's reported ``val_accuracy``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.db.session import session_factory
from api.ledger.models import Job
from api.settings import Settings
from api.teams.repository import create_api_key, get_or_create_team
from ml.data import split_indices
from tests.api.test_datasets import image_zip, iris_csv, job_on, text_csv, uploaded
from tests.worker.test_datasets_train import QUIET, with_holes
from worker.datasets import load_for_job
from worker.runner import run_job


def train(client: TestClient, settings: Settings, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    run_job(r.json()["id"], settings)
    job: dict[str, Any] = client.get(f"/v1/jobs/{r.json()['id']}").json()
    return job


def validation_rows(settings: Settings, job_id: str) -> tuple[np.ndarray, np.ndarray]:
    """The job's validation split, raw (NaN holes kept), and its class ids."""
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        job = s.get(Job, job_id)
        assert job is not None
        s.expunge(job)
    ds = load_for_job(factory, job)
    assert ds is not None
    _, val = split_indices(ds, job.spec["dataset"]["validation_split"], job.spec["seed"])
    return ds.x[val], ds.y[val]


def predict(client: TestClient, job_id: str, instances: list[Any]) -> list[dict[str, Any]]:
    r = client.post(f"/v1/jobs/{job_id}/predict", json={"instances": instances})
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["predictions"]
    return out


def accuracy(preds: list[dict[str, Any]], y: np.ndarray, names: list[str]) -> float:
    return float(np.mean([p["label"] == names[int(c)] for p, c in zip(preds, y, strict=True)]))


def test_tabular_with_imputation_predicts_raw_rows_and_downloads(
    client: TestClient, settings: Settings
) -> None:
    ds = uploaded(client, with_holes(iris_csv()), "csv", label_column="species", impute="mean")
    job = train(
        client,
        settings,
        job_on(
            ds["id"],
            32,
            model={"kind": "mlp", "hidden_units": [16]},
            epochs=15,
            seed=0,
            optimizer={"kind": "adam", "lr": 0.05},
            checkpointing=QUIET,
        ),
    )
    assert job["status"] == "succeeded" and job["export"]["status"] == "ready", job["export"]
    job_id = job["id"]

    # The validation rows as objects, holes as null: accuracy is the job's val_accuracy.
    x, y = validation_rows(settings, job_id)
    assert np.isnan(x).any()  # some validation rows have a hole the graph imputes
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    rows = [
        {n: (None if math.isnan(v) else float(v)) for n, v in zip(names, r, strict=True)} for r in x
    ]
    preds = predict(client, job_id, rows)
    bundle = client.get(f"/v1/jobs/{job_id}/model")
    meta = json.loads(zipfile.ZipFile(io.BytesIO(bundle.content)).read("model.json"))
    assert accuracy(preds, y, meta["class_names"]) == meta["metrics"]["val_accuracy"]
    assert meta["class_names"] == ["setosa", "versicolor", "virginica"]
    assert meta["feature_names"] == names and meta["preprocessing"]["imputation"] == "mean"
    assert sum(preds[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    # Lists in column order give the same answers.
    as_lists = predict(client, job_id, [[r[n] for n in names] for r in rows])
    assert [p["label"] for p in as_lists] == [p["label"] for p in preds]

    # The bundle: both files, its sha256 in the headers; ?format=onnx the graph alone.
    assert bundle.status_code == 200
    assert bundle.headers["content-length"] == str(len(bundle.content))
    assert bundle.headers["x-checksum-sha256"] == hashlib.sha256(bundle.content).hexdigest()
    assert bundle.headers["etag"] == f'"{bundle.headers["x-checksum-sha256"]}"'
    graph = client.get(f"/v1/jobs/{job_id}/model", params={"format": "onnx"})
    assert graph.headers["x-checksum-sha256"] == hashlib.sha256(graph.content).hexdigest()
    assert meta["onnx_sha256"] == graph.headers["x-checksum-sha256"] == job["export"]["onnx_sha256"]
    assert meta["job_id"] == job_id and meta["input"]["shape"] == [None, 4]
    # The graph alone answers as the API does.
    session = ort.InferenceSession(graph.content, providers=["CPUExecutionProvider"])
    probs = session.run(None, {"input": x.astype(np.float32)})[0]
    assert [meta["class_names"][i] for i in probs.argmax(1)] == [p["label"] for p in preds]


def test_bad_instances_are_422s_naming_index_and_field(
    client: TestClient, settings: Settings
) -> None:
    ds = uploaded(client, iris_csv(), "csv", label_column="species")  # no imputation
    job = train(
        client,
        settings,
        job_on(
            ds["id"], 64, model={"kind": "mlp", "hidden_units": [4]}, epochs=1, checkpointing=QUIET
        ),
    )
    url = f"/v1/jobs/{job['id']}/predict"
    good = [5.1, 3.5, 1.4, 0.2]
    r = client.post(
        url,
        json={
            "instances": [
                good,
                [1.0, 2.0],
                {"sepal_length": 1, "petal_girth": 2},
                [1, None, 3, 4],
                [1, "x", 3, 4],
                "text",
            ]
        },
    )
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    locs = {e["loc"]: e["type"] for e in r.json()["errors"]}
    assert locs["instances.1"] == "wrong_feature_count"
    assert locs["instances.2.petal_girth"] == "unknown_feature"
    assert locs["instances.2.sepal_width"] == "missing_value"  # absent and not imputed
    assert locs["instances.3.sepal_width"] == "missing_value"
    assert locs["instances.4.sepal_width"] == "not_a_number"
    assert locs["instances.5"] == "not_a_row"
    assert not any(loc.startswith("instances.0") for loc in locs)
    assert client.post(url, json={"instances": []}).status_code == 422
    settings.predict_max_instances = 3
    r = client.post(url, json={"instances": [good] * 4})
    assert r.status_code == 413 and "at most 3" in r.json()["detail"]

    # Another team's job is a 404; a job with no export a 409 that says why.
    with session_factory(settings.resolved_database_url)() as s:
        _, key = create_api_key(s, get_or_create_team(s, "other-team"), "member")
        s.commit()
    stranger = {"Authorization": f"Bearer {key}"}
    assert client.post(url, json={"instances": [good]}, headers=stranger).status_code == 404
    assert client.get(f"/v1/jobs/{job['id']}/model", headers=stranger).status_code == 404
    queued = client.post("/v1/jobs", json=job_on(ds["id"], 64)).json()["id"]
    for r in (
        client.post(f"/v1/jobs/{queued}/predict", json={"instances": [good]}),
        client.get(f"/v1/jobs/{queued}/model"),
    ):
        assert r.status_code == 409 and "queued" in r.json()["detail"]


@pytest.mark.slow
def test_an_export_failure_is_recorded_and_keeps_the_status(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ml.export

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ml.export.ExportError("ONNX Runtime and PyTorch differ by up to 0.5")

    monkeypatch.setattr(ml.export, "check_parity", broken)
    body = {
        "spec": {
            "dataset": {"source": {"kind": "builtin", "name": "iris"}},
            "epochs": 1,
            "checkpointing": QUIET,
        }
    }
    job = train(client, settings, body)
    assert (job["status"], job["status_reason"], job["error"]) == ("succeeded", "completed", None)
    assert job["export"]["status"] == "failed"
    assert "differ by up to 0.5" in job["export"]["error"]
    r = client.post(f"/v1/jobs/{job['id']}/predict", json={"instances": [[1, 2, 3, 4]]})
    assert r.status_code == 409 and "differ by up to 0.5" in r.json()["detail"]
    # (the list is a summary: the export is on the job itself)
    assert client.get(f"/v1/jobs/{job['id']}").json()["export"]["status"] == "failed"


@pytest.mark.parametrize("encoder", ["pooling", "transformer"])
def test_text_predictions_from_raw_strings(
    client: TestClient, settings: Settings, encoder: str
) -> None:
    ds = uploaded(client, text_csv(), "text_csv", text_column="review", label_column="sentiment")
    model = {
        "kind": "text",
        "embedding_dim": 16,
        "encoder": encoder,
        "num_heads": 2,
        "max_length": 12,
        "vocab_size": 64,
    }
    job = train(
        client,
        settings,
        job_on(
            ds["id"],
            16,
            model=model,
            epochs=8,
            seed=0,
            optimizer={"kind": "adam", "lr": 0.02},
            checkpointing=QUIET,
        ),
    )
    assert job["export"]["status"] == "ready", job["export"]
    texts = [line.split(",")[1] for line in text_csv().decode().splitlines()[1:]]
    labels = np.array(
        [0 if line.endswith("neg") else 1 for line in text_csv().decode().splitlines()[1:]]
    )
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        row = s.get(Job, job["id"])
        assert row is not None
        s.expunge(row)
    loaded = load_for_job(factory, row)
    assert loaded is not None
    _, val = split_indices(loaded, 0.2, 0)
    preds = predict(client, job["id"], [texts[i] for i in val])
    val_accuracy = client.get(f"/v1/jobs/{job['id']}/metrics", params={"name": "val_accuracy"})
    reported = val_accuracy.json()["series"][0]["points"][-1]["value"]
    assert accuracy(preds, labels[val], ["neg", "pos"]) == reported
    r = client.post(f"/v1/jobs/{job['id']}/predict", json={"instances": ["fine", 3]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "instances.1"


def _png(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_image_predictions_from_png_and_nested_lists(
    client: TestClient, settings: Settings
) -> None:
    ds = uploaded(client, image_zip(per_class=10), "image_zip", color_mode="greyscale")
    job = train(
        client,
        settings,
        job_on(ds["id"], 8, model={"kind": "cnn", "channels": [4]}, epochs=3, checkpointing=QUIET),
    )
    assert job["export"]["status"] == "ready", job["export"]
    x, y = validation_rows(settings, job["id"])  # stored (N, 1, 12, 12) uint8 values
    pixels = x[:, 0].astype(np.uint8)
    as_png = predict(client, job["id"], [_png(p) for p in pixels])
    as_lists = predict(client, job["id"], [p[:, :, None].tolist() for p in pixels])  # NHWC
    assert [p["label"] for p in as_png] == [p["label"] for p in as_lists]
    names = ["checker", "stripes_h", "stripes_v"]
    reported = client.get(f"/v1/jobs/{job['id']}/metrics", params={"name": "val_accuracy"})
    assert accuracy(as_png, y, names) == reported.json()["series"][0]["points"][-1]["value"]
    r = client.post(
        f"/v1/jobs/{job['id']}/predict",
        json={"instances": [_png(np.zeros((5, 7), np.uint8)), [[1, 2]], "%%"]},
    )
    assert r.status_code == 422
    assert [e["type"] for e in r.json()["errors"]] == [
        "wrong_image_size",
        "wrong_image_size",
        "not_base64",
    ]


def readme_python_block() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use the trained model", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.e2e
def test_the_readme_loads_the_bundle_with_onnxruntime_alone(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    body = {
        "spec": {
            "dataset": {"source": {"kind": "builtin", "name": "iris"}},
            "epochs": 30,
            "optimizer": {"kind": "adam", "lr": 0.02},
            "checkpointing": QUIET,
        }
    }
    job = train(client, settings, body)
    assert job["export"]["status"] == "ready", job["export"]
    (tmp_path / "model.zip").write_bytes(client.get(f"/v1/jobs/{job['id']}/model").content)
    code = readme_python_block()
    assert "trainforge" not in code and "import api" not in code and "import ml" not in code
    # Exactly the README's lines, in a fresh interpreter, from the folder holding model.zip.
    done = subprocess.run(
        [sys.executable, "-I", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['setosa', 'virginica']"
    # The README's curl body (a list row and a {feature: value} row) as it is written.
    section = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    curl_body = section.split("## Use the trained model", 1)[1].split("-d '", 1)[1].split("'", 1)[0]
    preds = predict(client, job["id"], json.loads(curl_body)["instances"])
    assert [p["label"] for p in preds] == ["setosa", "virginica"]


def test_restore_best_weights_exports_the_best_epoch(
    client: TestClient, settings: Settings
) -> None:
    from ml.data import load_dataset
    from ml.spec import JobSpec

    spec = {
        "dataset": {"source": {"kind": "builtin", "name": "iris"}},
        "epochs": 40,
        "seed": 1,
        "optimizer": {"kind": "sgd", "lr": 0.5},  # noisy: the last epoch is not the best
        "early_stopping": {"monitor": "val_loss", "patience": 4, "restore_best_weights": True},
        "checkpointing": QUIET,
    }
    job = train(client, settings, {"spec": spec})
    assert job["export"]["status"] == "ready", job["export"]
    meta = json.loads(
        zipfile.ZipFile(io.BytesIO(client.get(f"/v1/jobs/{job['id']}/model").content)).read(
            "model.json"
        )
    )
    ds = load_dataset(JobSpec.model_validate(spec))
    _, val = split_indices(ds, 0.2, 1)
    preds = predict(client, job["id"], ds.x[val].tolist())
    # The final metrics are the best epoch's, and so are the exported weights.
    assert accuracy(preds, ds.y[val], meta["class_names"]) == meta["metrics"]["val_accuracy"]
    points = client.get(f"/v1/jobs/{job['id']}/metrics", params={"name": "val_loss"}).json()
    losses = [p["value"] for p in points["series"][0]["points"]]
    assert meta["metrics"]["val_loss"] == pytest.approx(min(losses))
    assert job["status_reason"] == "early_stopped" and losses[-1] > min(losses)


def test_a_job_canceled_after_its_first_epoch_is_exported(
    client: TestClient, settings: Settings
) -> None:
    import threading
    import time

    from api.ledger import repository as jobs_repo

    spec = {
        "dataset": {
            "source": {
                "kind": "builtin",
                "name": "synthetic",
                "synthetic": {"n_samples": 20000, "n_features": 8},
            },
            "batch_size": 8,
        },
        "model": {"kind": "mlp", "hidden_units": [8]},
        "epochs": 1000,
        "checkpointing": QUIET,
    }
    job_id = client.post("/v1/jobs", json={"spec": spec}).json()["id"]
    worker = threading.Thread(target=run_job, args=(job_id, settings))
    worker.start()
    factory = session_factory(settings.resolved_database_url)
    for _ in range(1200):  # polls, no timing asserted: until the first epoch is done
        with factory() as s:
            row = s.get(Job, job_id)
            assert row is not None
            if row.progress_epoch >= 1:
                jobs_repo.request_cancel(s, row)
                s.commit()
                break
        time.sleep(0.1)
    worker.join(timeout=300)
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert (job["status"], job["status_reason"]) == ("canceled", "canceled_by_user")
    assert job["export"]["status"] == "ready", job["export"]
    preds = predict(client, job_id, [[0.0] * 8])
    assert preds[0]["label"] in ("0", "1")

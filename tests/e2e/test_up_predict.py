"""`trainforge up`: a job's model is exported by the real worker process and predicts over HTTP."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.procs import UpServer, trainforge_up, wait_status

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[UpServer]:
    with trainforge_up(tmp_path) as up:
        yield up


def test_wine_job_exports_and_predicts_its_validation_accuracy(server: UpServer) -> None:
    auth = {"Authorization": f"Bearer {server.key}"}
    spec = {
        "dataset": {"source": {"kind": "builtin", "name": "wine"}},
        "epochs": 20,
        "optimizer": {"kind": "adam", "lr": 0.01},
        "seed": 0,
    }
    r = httpx.post(f"{server.base}/v1/jobs", json={"spec": spec}, headers=auth)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    client = httpx.Client(base_url=server.base, headers=auth, timeout=60)
    job = wait_status(client.get, job_id, {"succeeded", "failed", "canceled"}, 300)
    assert job["status"] == "succeeded", server.log.read_text()[-3000:]
    assert job["export"]["status"] == "ready", job["export"]

    bundle = client.get(f"/v1/jobs/{job_id}/model")
    assert bundle.headers["x-checksum-sha256"] == hashlib.sha256(bundle.content).hexdigest()
    meta = json.loads(zipfile.ZipFile(io.BytesIO(bundle.content)).read("model.json"))
    assert meta["parity"]["max_abs_diff"] <= 1e-5

    # The job's validation rows, raw, through the API: its reported val_accuracy.
    from sklearn.datasets import load_wine

    from ml.checks import builtin_info
    from ml.data import LoadedDataset, split_indices
    from ml.spec import BuiltinSource

    wine = load_wine()
    info = builtin_info(BuiltinSource(name="wine"))
    ds = LoadedDataset(wine.data, wine.target, info)
    _, val = split_indices(ds, 0.2, 0)
    rows = [dict(zip(meta["feature_names"], map(float, wine.data[i]), strict=True)) for i in val]
    r = client.post(f"/v1/jobs/{job_id}/predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    labels = [p["label"] for p in r.json()["predictions"]]
    correct = [
        label == meta["class_names"][wine.target[i]] for label, i in zip(labels, val, strict=True)
    ]
    assert sum(correct) / len(val) == meta["metrics"]["val_accuracy"]

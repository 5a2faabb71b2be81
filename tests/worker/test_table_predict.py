"""Raw rows in at predict time for a job on a mixed-type CSV (issue 29): the API and the CLI
take rows as uploaded (strings, booleans, ISO dates, empty cells, unseen categories,
the label and left-out columns), and answer what the exported graph answers on the
stored-form rows."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from api.settings import Settings
from tests.api.test_dataset_columns import mixed_csv
from tests.api.test_datasets import job_on, uploaded
from tests.worker.test_datasets_train import QUIET
from tests.worker.test_export_predict import predict, train
from trainforge.client import app as cli_app
from trainforge.client import model_cmd
from trainforge.client.config import Config
from trainforge.client.http import Api

RAW = [
    {"id": "u9999", "city": "Oslo", "member": "yes", "joined": "2014-05-17", "rooms": 2,
     "income": 51.5, "label": "a"},
    {"city": "Rome", "member": False, "joined": "", "rooms": "3", "income": None},
    {"city": "", "member": "NO", "joined": "2030-01-01T10:00:00Z", "rooms": 9, "income": "NA"},
]  # fmt: skip
# The same rows in the stored form: city index (Lima, Oslo, Pune; -1 unknown), member 0/1,
# joined days, rooms index (1, 2, 3, 4; 9 unknown), income.
STORED = np.array(
    [[1, 1, 16207, 1, 51.5], [-1, 0, np.nan, 2, np.nan], [np.nan, 0, 21915 + 10 / 24, -1, np.nan]],
    dtype=np.float32,
)


@pytest.fixture
def cli(client: TestClient, admin_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config(url="http://testserver", api_key=admin_key, key_source="test")
    monkeypatch.setattr(model_cmd, "connect", lambda: Api(config, transport=client._transport))


def test_raw_rows_predict_through_the_api_the_cli_and_onnx(
    cli: None, client: TestClient, settings: Settings, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    ds = uploaded(client, mixed_csv(n=90), "csv", impute="mean")
    body: dict[str, Any] = job_on(ds["id"], 16, model={"kind": "mlp", "hidden_units": [8]},
                                  epochs=3, seed=0, checkpointing=QUIET)  # fmt: skip
    body["spec"]["dataset"]["columns"] = {"income": {"missing_indicator": True}}
    job = train(client, settings, body)
    assert job["status"] == "succeeded", job
    got = predict(client, job["id"], RAW)

    bundle = client.get(f"/v1/jobs/{job['id']}/model")
    assert bundle.status_code == 200, bundle.text
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as zf:
        onnx, meta = zf.read("model.onnx"), json.loads(zf.read("model.json"))
    assert [c["type"] for c in meta["columns"]] == [
        "categorical", "boolean", "date", "categorical", "number"
    ]  # fmt: skip
    assert "id" in meta["ignored_columns"] and "label" in meta["ignored_columns"]
    session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": STORED})[0]
    np.testing.assert_allclose(
        [[p["probabilities"][c] for c in "ab"] for p in got], expected, atol=1e-6
    )

    rows = tmp_path / "rows.csv"
    with rows.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(RAW[0]))
        w.writeheader()
        w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in RAW)
    assert cli_app.main(["predict", job["id"], str(rows), "--json"]) == 0
    from_cli = json.loads(capsys.readouterr().out)["predictions"]
    np.testing.assert_allclose(
        [[p["probabilities"][c] for c in "ab"] for p in from_cli], expected, atol=1e-6
    )

    assert cli_app.main(["export", job["id"], "-o", str(tmp_path / "model")]) == 0
    capsys.readouterr()
    raw = ort.InferenceSession(
        (tmp_path / "model" / "model_raw.onnx").read_bytes(), providers=["CPUExecutionProvider"]
    )
    cells = [[str(r.get(c) if r.get(c) is not None else "") for c in meta["feature_names"]]
             for r in RAW]  # fmt: skip
    cells[1][1], cells[0][1] = "false", "yes"  # JSON false -> the CSV word
    from_raw = raw.run(None, {"rows": np.array(cells, dtype=object)})[0]
    np.testing.assert_allclose(from_raw, expected, atol=1e-6)

    bad_row = {"city": "Oslo", "member": "maybe", "joined": 5}
    r = client.post(f"/v1/jobs/{job['id']}/predict", json={"instances": [bad_row]})
    assert r.status_code == 422
    locs = {e["loc"]: e["type"] for e in r.json()["errors"]}
    assert {"instances.0.member", "instances.0.joined"} <= set(locs)

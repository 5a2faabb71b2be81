"""`trainforge predict JOB FILE` and `trainforge export JOB -o DIR` against the API in-process."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.settings import Settings
from tests.api.test_datasets import image_zip, job_on, uploaded
from tests.worker.test_datasets_train import QUIET
from tests.worker.test_export_predict import train
from trainforge.client import app as cli_app
from trainforge.client import model_cmd
from trainforge.client.config import Config
from trainforge.client.http import Api

IRIS_JOB = {
    "spec": {
        "dataset": {"source": {"kind": "builtin", "name": "iris"}},
        "epochs": 20,
        "optimizer": {"kind": "adam", "lr": 0.02},
        "checkpointing": QUIET,
    }
}
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


@pytest.fixture
def cli(client: TestClient, admin_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config(url="http://testserver", api_key=admin_key, key_source="test")
    monkeypatch.setattr(model_cmd, "connect", lambda: Api(config, transport=client._transport))


def test_predict_from_csv_and_json_lines_and_export(
    cli: None, client: TestClient, settings: Settings, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    job_id = train(client, settings, IRIS_JOB)["id"]
    expected = client.post(f"/v1/jobs/{job_id}/predict", json={"instances": ROWS}).json()

    rows_csv = tmp_path / "rows.csv"
    with rows_csv.open("w", newline="") as f:
        csv.writer(f).writerows([FEATURES, *ROWS])
    assert cli_app.main(["predict", job_id, str(rows_csv), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    rows_jsonl = tmp_path / "rows.jsonl"
    rows_jsonl.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    assert cli_app.main(["predict", job_id, str(rows_jsonl)]) == 0
    table = capsys.readouterr().out
    for p in expected["predictions"]:
        assert p["label"] in table

    assert cli_app.main(["export", job_id, "-o", str(tmp_path / "model")]) == 0
    out = capsys.readouterr().out
    bundle = client.get(f"/v1/jobs/{job_id}/model").content
    assert hashlib.sha256(bundle).hexdigest() in out
    with zipfile.ZipFile(io.BytesIO(bundle)) as zf:
        for name in ("model.onnx", "model.json"):
            assert (tmp_path / "model" / name).read_bytes() == zf.read(name)


def test_predict_errors_are_one_clear_message(
    cli: None, client: TestClient, settings: Settings, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    job_id = train(client, settings, IRIS_JOB)["id"]
    many = tmp_path / "many.jsonl"  # the bad row is in the second batch of 256
    many.write_text("\n".join(json.dumps(ROWS[0]) for _ in range(300)) + "\n[1, 2]\n")
    assert cli_app.main(["predict", job_id, str(many)]) == 2
    err = capsys.readouterr().err
    assert "instances.300:" in err and "Traceback" not in err
    for path, message in ((tmp_path / "nope.csv", "does not exist"),
                          (tmp_path / "rows.txt", "send a .csv")):  # fmt: skip
        if path.suffix == ".txt":
            path.write_text("x")
        assert cli_app.main(["predict", job_id, str(path)]) == 2
        assert message in capsys.readouterr().err
    assert cli_app.main(["export", "no-such-job", "-o", str(tmp_path)]) == 2


def test_predict_an_image_folder(
    cli: None, client: TestClient, settings: Settings, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    data = image_zip(per_class=6)
    ds = uploaded(client, data, "image_zip", color_mode="greyscale")
    job = train(client, settings, job_on(ds["id"], 8, model={"kind": "cnn", "channels": [4]},
                                         epochs=2, checkpointing=QUIET))  # fmt: skip
    folder = tmp_path / "images"
    folder.mkdir()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = [m for m in zf.namelist() if m.endswith(".png")][:4]
        for m in members:
            (folder / m.replace("/", "_")).write_bytes(zf.read(m))
    assert cli_app.main(["predict", job["id"], str(folder), "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert len(predictions) == 4
    assert all(p["label"] in ("checker", "stripes_h", "stripes_v") for p in predictions)

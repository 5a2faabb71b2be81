"""``trainforge show JOB`` says whether the job's model was exported, and why not (issue 28, 5).

A model that cannot be exported leaves the job ``succeeded``; the export's own status and
reason are on the job (API), in ``show`` (CLI) and on the job page (dashboard).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.settings import Settings
from tests.worker.test_datasets_train import QUIET
from tests.worker.test_export_predict import train
from trainforge.client import output
from trainforge.client.app import main
from trainforge.client.http import Api


@pytest.fixture(autouse=True)
def cli_on_the_app(
    client: TestClient, admin_key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TRAINFORGE_URL", "http://testserver")
    monkeypatch.setenv("TRAINFORGE_API_KEY", admin_key)
    transport = client._transport
    monkeypatch.setattr(output, "Api", lambda config: Api(config, transport=transport))


def test_show_says_why_a_succeeded_job_has_no_model(
    client: TestClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import ml.export

    def cannot(*args: Any, **kwargs: Any) -> Any:
        raise ml.export.ExportError("no ONNX export for op 'custom_attention'")

    monkeypatch.setattr(ml.export, "check_parity", cannot)
    spec = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 1}
    job = train(client, settings, {"spec": {**spec, "checkpointing": QUIET}})
    assert (job["status"], job["export"]["status"]) == ("succeeded", "failed")
    assert main(["show", job["id"]]) == 0
    shown = " ".join(capsys.readouterr().out.split())  # the console may wrap long lines
    assert "succeeded (completed)" in shown
    assert "model not exported: The model export failed:" in shown
    assert "no ONNX export for op 'custom_attention'" in shown

"""`trainforge datasets upload FILE` with no --format: inferred, columns shown (issue 29)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.test_dataset_columns import mixed_csv
from trainforge.client import app as cli_app
from trainforge.client import datasets_cmd
from trainforge.client.config import Config
from trainforge.client.http import Api


@pytest.fixture
def cli(client: TestClient, admin_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config(url="http://testserver", api_key=admin_key, key_source="test")
    monkeypatch.setattr(datasets_cmd, "connect", lambda: Api(config, transport=client._transport))


def test_upload_infers_the_format_and_prints_the_columns(
    cli: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(mixed_csv())
    args = ["datasets", "upload", str(path), "--impute", "mean", "--column", "rooms=number"]
    assert cli_app.main(args) == 0
    out = capsys.readouterr().out
    for cell in ("COLUMN", "city", "categorical", "joined", "date", "member", "boolean"):
        assert cell in out
    assert "rooms" in out and "identifier" in out
    assert cli_app.main(["datasets", "upload", str(path)]) == 2  # missing incomes: one message
    err = capsys.readouterr().err
    assert "impute=mean" in err and "Traceback" not in err

"""``trainforge delete JOB`` and ``trainforge jobs --name`` against the real API in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.settings import Settings
from tests.api.test_storage_api import DIGITS, run_to_end
from trainforge.client import output
from trainforge.client.app import main
from trainforge.client.http import Api


@pytest.fixture(autouse=True)
def cli_on_the_app(
    client: TestClient, admin_key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The CLI talks to the app in-process, over the real HTTP surface, with the admin key."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TRAINFORGE_URL", "http://testserver")
    monkeypatch.setenv("TRAINFORGE_API_KEY", admin_key)
    transport = client._transport
    monkeypatch.setattr(output, "Api", lambda config: Api(config, transport=transport))


def test_delete_an_ended_job_and_refuse_a_queued_one(
    client: TestClient, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    queued = client.post("/v1/jobs", json={"spec": DIGITS}).json()
    assert main(["delete", queued["id"]]) == 2  # 409: one line, no traceback
    assert "queued" in capsys.readouterr().err
    ended = client.post("/v1/jobs", json={"spec": DIGITS}).json()
    run_to_end(settings, ended["id"], weights=b"w" * 10, resume=b"r" * 10)
    assert main(["delete", ended["id"]]) == 0
    assert f"job {ended['id']} deleted" in capsys.readouterr().out
    assert client.get(f"/v1/jobs/{ended['id']}").status_code == 404
    assert main(["delete", ended["id"]]) == 2  # now unknown


def test_jobs_name_filters_the_listing(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("resnet-a", "ResNet-b", "mlp"):
        client.post("/v1/jobs", json={"spec": DIGITS, "name": name})
    assert main(["jobs", "--name", "resnet", "--json"]) == 0
    names = sorted(j["name"] for j in json.loads(capsys.readouterr().out)["items"])
    assert names == ["ResNet-b", "resnet-a"]

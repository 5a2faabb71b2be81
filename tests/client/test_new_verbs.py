"""The verbs of issue 25 against the real API in-process: webhooks ls|add|rm|test,
datasets show|rm, jobs --sweep, delete asking on a terminal (--yes), hidden old spellings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer
from fastapi.testclient import TestClient

from api.settings import Settings
from trainforge.client import output
from trainforge.client.app import main
from trainforge.client.http import Api

CSV = "x,y\n" + "".join(f"{i},{'a' if i % 2 else 'b'}\n" for i in range(30))


@pytest.fixture(autouse=True)
def cli_on_the_app(
    client: TestClient, admin_key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TRAINFORGE_URL", "http://testserver")
    monkeypatch.setenv("TRAINFORGE_API_KEY", admin_key)
    transport = client._transport
    monkeypatch.setattr(output, "Api", lambda config: Api(config, transport=transport))


def json_out(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 0) -> object:
    assert main(argv) == code, capsys.readouterr()
    return json.loads(capsys.readouterr().out)


def test_webhooks_add_ls_test_rm(
    client: TestClient, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    client.app.state.settings = settings.model_copy(update={"webhook_allow_private": True})  # type: ignore[attr-defined]
    hook = json_out(capsys, ["webhooks", "add", "http://localhost:9/h", "-e", "job.failed",
                             "--json"])  # fmt: skip
    assert isinstance(hook, dict) and hook["secret"].startswith("whsec_")
    listed = json_out(capsys, ["webhooks", "ls", "--json"])
    assert isinstance(listed, dict) and [w["id"] for w in listed["items"]] == [hook["id"]]
    delivery = json_out(capsys, ["webhooks", "test", hook["id"], "--json"])
    assert isinstance(delivery, dict) and delivery["event_type"] == "webhook.test"
    assert main(["webhooks", "rm", hook["id"]]) == 0  # no terminal: not asked
    assert f"webhook {hook['id']} deleted" in capsys.readouterr().out
    assert main(["webhook", "ls"]) == 0  # the singular: a hidden alias
    assert hook["id"] not in capsys.readouterr().out


def test_datasets_show_and_rm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "toy.csv"
    data.write_text(CSV)
    ds = json_out(capsys, ["datasets", "upload", str(data), "--format", "csv",
                           "--label-column", "y", "--json"])  # fmt: skip
    assert isinstance(ds, dict)
    assert main(["datasets", "show", ds["id"]]) == 0
    shown = capsys.readouterr().out
    assert f"dataset   {ds['id']}  toy.csv" in shown and "samples   30, 1 features" in shown
    assert main(["datasets", "rm", ds["id"], "--yes"]) == 0
    assert main(["datasets", "show", ds["id"]]) == 2


def test_delete_asks_on_a_terminal(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {"spec": {"dataset": {"source": {"kind": "builtin", "name": "iris"}}}}
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    client.post(f"/v1/jobs/{job_id}/cancel")
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(typer, "confirm", lambda question, default: False)
    assert main(["delete", job_id]) == 2
    assert "nothing deleted" in capsys.readouterr().err
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    assert main(["delete", job_id[:8], "--yes"]) == 0  # a short id, and --yes: not asked
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404


def test_jobs_sweep_filter(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    spec = {"spec": {"dataset": {"source": {"kind": "builtin", "name": "iris"}}}}
    client.post("/v1/jobs", json=spec)
    page = json_out(capsys, ["jobs", "--sweep", "0" * 32, "--json"])
    assert isinstance(page, dict) and page["items"] == []
    page = json_out(capsys, ["jobs", "--json"])
    assert isinstance(page, dict) and len(page["items"]) == 1

"""docs/sweeps.md's sweep file runs as written, through `trainforge sweep submit --follow`
and `trainforge sweep show` (the CLI's HTTP client against the API in-process; the trials
run in the worker's own code on SQLite)."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.db.session import session_factory
from api.ledger.models import Job
from api.settings import Settings
from tests.conftest import REPO
from trainforge.client import app as cli_app
from trainforge.client import sweep_cmd
from trainforge.client.config import Config
from trainforge.client.http import Api
from worker.runner import run_job


def docs_sweep_file() -> str:
    text = (REPO / "docs" / "sweeps.md").read_text()
    section = text.split("## A sweep file", 1)[1]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match, "docs/sweeps.md has no yaml sweep file"
    return match.group(1)


@pytest.fixture
def cli(client: TestClient, admin_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config(url="http://testserver", api_key=admin_key, key_source="test")
    monkeypatch.setattr(sweep_cmd, "connect", lambda: Api(config, transport=client._transport))


def run_trials(settings: Settings, stop: threading.Event) -> None:
    """A worker: runs queued jobs until told to stop."""
    factory = session_factory(settings.resolved_database_url)
    while not stop.is_set():
        with factory() as s:
            queued = s.scalars(select(Job.id).where(Job.status == "queued")).first()
        if queued:
            run_job(queued, settings)
        else:
            time.sleep(0.1)


@pytest.mark.slow
def test_the_docs_sweep_file_runs_as_written(
    cli: None, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(docs_sweep_file())
    stop = threading.Event()
    worker = threading.Thread(target=run_trials, args=(settings, stop), daemon=True)
    worker.start()
    try:
        code = cli_app.main(["sweep", "submit", str(path), "--follow"])
    finally:
        stop.set()
        worker.join(timeout=120)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "succeeded (completed)" in out and "best: trial" in out
    sweep_id = re.search(r"sweep (\w+) started", out)
    assert sweep_id
    assert cli_app.main(["sweep", "show", sweep_id.group(1), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "succeeded" and len(shown["trials"]) == 4
    assert shown["best"]["objective"] == max(t["objective"] for t in shown["trials"])
    assert cli_app.main(["sweep", "ls"]) == 0
    assert sweep_id.group(1) in capsys.readouterr().out


def test_a_bad_sweep_file_is_one_line_per_problem_no_traceback(
    cli: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(docs_sweep_file().replace("high: 0.4", "high: 1.2"))
    assert cli_app.main(["sweep", "submit", str(path)]) == 2
    err = capsys.readouterr().err
    assert 'parameters["regularization.dropout"].high' in err and "Traceback" not in err
    path.write_text("just: a mapping\n")
    assert cli_app.main(["sweep", "submit", str(path)]) == 2
    assert "a sweep file is a mapping" in capsys.readouterr().err
    assert cli_app.main(["sweep", "show", "nope"]) == 2
    assert "No sweep" in capsys.readouterr().err

"""`trainforge logs JOB [-f]` against the API in-process (the CLI's HTTP client, no server)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from fastapi.testclient import TestClient

from api.db.models import utcnow
from api.db.session import session_factory
from api.joblogs import repository as joblogs
from api.ledger import repository as repo
from api.settings import Settings
from trainforge.client import app as cli_app
from trainforge.client import logs_cmd
from trainforge.client.config import Config
from trainforge.client.http import Api

DIGITS = {"dataset": {"source": {"kind": "builtin", "name": "digits"}}}


@pytest.fixture
def cli(client: TestClient, admin_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config(url="http://testserver", api_key=admin_key, key_source="test")
    monkeypatch.setattr(
        logs_cmd,
        "connect",
        lambda: Api(config, transport=client._transport),
    )
    monkeypatch.setattr(logs_cmd, "POLL_SECONDS", 0.05)


def say(settings: Settings, job_id: str, attempt: int, *messages: str) -> None:
    with session_factory(settings.resolved_database_url)() as s:
        lines = [joblogs.Line(utcnow(), "info", "engine", m) for m in messages]
        joblogs.write_lines(s, job_id, attempt, lines, max_lines=100)
        s.commit()


def running_job(client: TestClient, settings: Settings) -> tuple[str, int]:
    job_id = client.post("/v1/jobs", json={"spec": DIGITS}).json()["id"]
    with session_factory(settings.resolved_database_url)() as s:
        attempt = repo.claim_job(s, job_id, 30)
        s.commit()
    assert attempt is not None
    return job_id, attempt


def test_logs_prints_the_lines_and_follow_waits_for_the_end(
    cli: None, client: TestClient, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id, attempt = running_job(client, settings)
    say(settings, job_id, attempt, "epoch 1/2: loss=0.5")
    assert cli_app.main(["logs", job_id]) == 0
    assert "epoch 1/2: loss=0.5" in capsys.readouterr().out

    def finish_later() -> None:
        time.sleep(0.5)
        say(settings, job_id, attempt, "early stopping fired at epoch 2")
        with session_factory(settings.resolved_database_url)() as s:
            repo.finish_job(s, job_id, attempt, status="succeeded", reason="early_stopped")
            s.commit()

    threading.Thread(target=finish_later).start()
    assert cli_app.main(["logs", job_id, "-f", "--json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [x["message"] for x in out] == ["epoch 1/2: loss=0.5", "early stopping fired at epoch 2"]


def test_an_unknown_job_is_a_one_line_error(cli: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_app.main(["logs", "no-such-job"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trainforge: ") and "Traceback" not in err

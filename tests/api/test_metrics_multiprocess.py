"""PROMETHEUS_MULTIPROC_DIR: several API processes, one /metrics that sums their HTTP counts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.db.migrate import upgrade
from tests.conftest import REPO

pytestmark = pytest.mark.e2e

SCRIPT = """
import sys
from fastapi.testclient import TestClient
from api.app import create_app
from api.settings import Settings
from tests.conftest import FakeQueue

settings = Settings(home=sys.argv[1])
with TestClient(create_app(settings, queue=FakeQueue(settings))) as client:
    for _ in range(int(sys.argv[2])):
        assert client.get("/healthz").status_code == 200
    if sys.argv[3] == "scrape":
        print(client.get("/metrics").text)
"""


def api_process(home: Path, env: dict[str, str], requests: int, scrape: bool) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(home), str(requests), "scrape" if scrape else "-"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_two_api_processes_are_summed(tmp_path: Path) -> None:
    home, shared = tmp_path / "home", tmp_path / "prom"
    home.mkdir()
    shared.mkdir()
    upgrade(f"sqlite:///{home / 'trainforge.db'}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    api_process(home, env, 3, scrape=False)
    text = api_process(home, env, 2, scrape=True)
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    healthz = [
        s.value
        for s in samples
        if s.name == "trainforge_http_requests_total" and s.labels["route"] == "/healthz"
    ]
    assert healthz == [5.0]  # 3 from the first process (gone now) + 2 from this one
    assert any(s.name == "trainforge_workers_alive" for s in samples)  # the SQL side too

"""A checkout without the dashboard's front-end files (no `make ui`): one clear log line at
start, and /ui/ and /docs say how to fix it instead of a blank page."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import api.ui as ui
from api.app import create_app
from api.settings import Settings
from tests.conftest import FakeQueue


@pytest.fixture
def no_vendor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = {name: tmp_path / "nothing" / name for name in ui.VENDOR}
    monkeypatch.setattr(ui, "VENDOR", missing)


def test_the_dashboard_page_says_how_to_install_its_files(
    no_vendor: None, client: TestClient
) -> None:
    client.headers.pop("Authorization")
    for path in ("/ui/", "/ui/jobs/abc", "/docs"):
        r = client.get(path)
        assert r.status_code == 503, path
        assert r.headers["content-type"].startswith("text/html")
        assert "not installed" in r.text and "make ui" in r.text, r.text
    r = client.get("/ui/vendor/uplot/uPlot.esm.js")
    assert r.status_code == 404 and "make ui" in r.json()["detail"]


def test_one_line_is_logged_at_start(
    no_vendor: None, settings: Settings, fake_queue: FakeQueue, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="trainforge.ui"):
        create_app(settings, queue=fake_queue)
    lines = [r.getMessage() for r in caplog.records if r.name == "trainforge.ui"]
    assert len(lines) == 1
    assert "uplot, yaml, swagger-ui, codemirror not installed" in lines[0] and "make ui" in lines[0]


def test_a_built_wheel_serves_its_vendor_copy(tmp_path: Path) -> None:
    """vendor/ (copied into a wheel by setup.py) comes before node_modules/."""
    from api.ui import bundle

    if not (ui.UI_DIR / "node_modules" / "uplot").is_dir():
        pytest.skip("api/ui/node_modules is not installed (`make ui`)")
    copied = bundle.copy_vendor(ui.UI_DIR, tmp_path / "vendor")
    names = {p.relative_to(tmp_path / "vendor").as_posix() for p in copied}
    assert {"uplot/uPlot.esm.js", "yaml/index.js", "swagger-ui/swagger-ui-bundle.js",
            "codemirror/codemirror.js", "codemirror/LICENSE"} <= names  # fmt: skip
    assert all(not n.endswith(".map") for n in names)  # only what the pages load

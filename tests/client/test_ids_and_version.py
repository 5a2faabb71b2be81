"""The CLI's short ids (6+ characters, unique in the team), `--version` against the server's,
and bare `trainforge` (its help, exit 0) -- against a mock server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from trainforge import __version__
from trainforge.client import output, version_cmd
from trainforge.client.app import main
from trainforge.client.http import Api
from trainforge.sdk.transport import Http

Handler = Callable[[httpx.Request], httpx.Response]
FULL = "a6bcb633" + "0" * 24
OTHER = "a6bcb6ff" + "1" * 24


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TRAINFORGE_URL", "TRAINFORGE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TRAINFORGE_API_KEY", "tf_test")


def serve(monkeypatch: pytest.MonkeyPatch, handler: Handler) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    transport = httpx.MockTransport(recording)
    monkeypatch.setattr(output, "Api", lambda config: Api(config, transport=transport))
    monkeypatch.setattr(
        version_cmd, "Http", lambda config, **kw: Http(config, **kw, transport=transport)
    )
    return seen


def jobs_with_prefix(ids: list[str]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/jobs":
            prefix = request.url.params["id_prefix"]
            items = [{"id": i, "name": "n", "status": "succeeded"} for i in ids
                     if i.startswith(prefix)]  # fmt: skip
            return httpx.Response(200, json={"items": items, "next_cursor": None})
        if request.url.path == f"/v1/jobs/{FULL}/cancel":
            return httpx.Response(200, json={"id": FULL, "status": "canceled"})
        return httpx.Response(404, json={"title": "Not found", "status": 404, "detail": "No job"})

    return handler


def test_a_unique_prefix_of_six_resolves(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = serve(monkeypatch, jobs_with_prefix([FULL, OTHER]))
    assert main(["cancel", "a6bcb63"]) == 0
    assert f"job {FULL}: canceled" in capsys.readouterr().out
    assert seen[0].url.params["id_prefix"] == "a6bcb63"


def test_an_ambiguous_prefix_exits_2_listing_the_candidates(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(monkeypatch, jobs_with_prefix([FULL, OTHER]))
    assert main(["cancel", "a6bcb6"]) == 2
    err = capsys.readouterr().err
    assert "a6bcb6 starts several job ids" in err and FULL in err and OTHER in err


def test_an_unknown_prefix_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(monkeypatch, jobs_with_prefix([FULL]))
    assert main(["show", "bbbbbbb"]) == 2
    assert "no job of your team has an id starting with bbbbbbb" in capsys.readouterr().err


def test_bare_trainforge_prints_its_help_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "Usage: trainforge" in out and "submit" in out and "Operator commands" in out


@pytest.mark.parametrize(("server", "warned"), [(__version__, False), ("99.0.0", True)])
def test_version_shows_both_and_warns_when_majors_differ(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], server: str, warned: bool
) -> None:
    serve(monkeypatch, lambda r: httpx.Response(200, json={"version": server, "api": "v1"}))
    assert main(["--version"]) == 0
    captured = capsys.readouterr()
    assert f"trainforge {__version__} (client)" in captured.out
    assert f"server {server} at http://127.0.0.1:8000" in captured.out
    assert ("differ in major version" in captured.err) is warned

"""Exit codes and messages of the user CLI, against a mock HTTP server (httpx MockTransport):
0 succeeded, 1 failed or canceled, 2 invalid input, 3 unreachable or refused, 130 detached.
Also: follow reconnects with Last-Event-ID and prints every epoch once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from trainforge.client import follow_cmd, output
from trainforge.client.app import main
from trainforge.client.http import Api

Handler = Callable[[httpx.Request], httpx.Response]
JOB = {"id": "j1", "name": None, "status": "running", "spec": {"epochs": 2,
       "checkpointing": {"monitor": "val_loss"}}, "progress": {"epoch": 0, "epochs": 2},
       "error": None}  # fmt: skip


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TRAINFORGE_URL", "TRAINFORGE_API_KEY", "TRAINFORGE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TRAINFORGE_API_KEY", "tf_test")
    monkeypatch.setattr(follow_cmd.time, "sleep", lambda _s: None)


def serve(monkeypatch: pytest.MonkeyPatch, handler: Handler) -> None:
    transport = httpx.MockTransport(handler)
    monkeypatch.setattr(output, "Api", lambda config: Api(config, transport=transport))


def problem(status: int, errors: list[dict[str, str]] | None = None) -> httpx.Response:
    body: dict[str, Any] = {"title": "t", "status": status, "detail": f"detail {status}"}
    if errors is not None:
        body["errors"] = errors
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


def sse(*events: tuple[int, str, dict[str, Any]]) -> httpx.Response:
    text = "".join(
        f"event: {kind}\ndata: {json.dumps({'kind': kind, **data})}\nid: {i}\n\n"
        for i, kind, data in events
    )
    return httpx.Response(200, text=": job j1\n\n" + text,
                          headers={"content-type": "text/event-stream"})  # fmt: skip


def epoch_metrics(epoch: int) -> dict[str, Any]:
    names = {"loss": 0.5, "val_loss": 0.6, "accuracy": 0.9}
    return {"attempt": 1, "series": [
        {"name": n, "points": [{"step": 10 * (epoch + 1), "epoch": epoch, "value": v}]}
        for n, v in names.items()]}  # fmt: skip


def end(status: str, reason: str) -> tuple[int, str, dict[str, Any]]:
    return (9, "end", {"status": status, "status_reason": reason})


def job_routes(stream: Callable[[httpx.Request], httpx.Response]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/jobs/j1":
            return httpx.Response(200, json=JOB)
        if path == "/v1/jobs/j1/events":
            return stream(request)
        if path == "/v1/jobs/j1/checkpoints":
            return httpx.Response(200, json={"items": [], "next_cursor": None})
        return problem(404)

    return handler


@pytest.mark.parametrize(("status", "code"), [("succeeded", 0), ("failed", 1), ("canceled", 1)])
def test_follow_exits_with_the_jobs_outcome(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], status: str, code: int
) -> None:
    serve(monkeypatch, job_routes(lambda _r: sse(end(status, "x"))))
    assert main(["follow", "j1"]) == code
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"job j1 {status} (x)")


def test_follow_reconnects_after_the_last_event_and_prints_each_epoch_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str | None] = []
    first = [(1, "status", {"from_status": "queued", "to_status": "running", "attempt": 1}),
             (2, "metrics", epoch_metrics(0))]  # fmt: skip
    rest = [(3, "metrics", epoch_metrics(1)), end("succeeded", "completed")]

    def stream(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("last-event-id"))
        if len(seen) == 1:
            return sse(*first)  # the connection drops after event 2
        if len(seen) == 2:
            raise httpx.ConnectError("refused")  # the API is restarting
        return sse(*rest)

    serve(monkeypatch, job_routes(stream))
    assert main(["follow", "j1"]) == 0
    assert seen == [None, "2", "2"]
    out = capsys.readouterr().out
    assert [ln.split()[1] for ln in out.splitlines() if ln.startswith("epoch ")] == ["1/2", "2/2"]


def test_ctrl_c_detaches_with_130_and_says_how_to_reattach(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def stream(_request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    cancels: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/cancel"):
            cancels.append(request.url.path)
        return job_routes(stream)(request)

    serve(monkeypatch, handler)
    assert main(["follow", "j1"]) == 130
    assert "trainforge follow j1" in capsys.readouterr().err
    assert cancels == []  # detaching never cancels


def test_a_422_prints_every_field_error_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    errors = [{"loc": "spec.optimizer.lr", "msg": "must be > 0", "type": "greater_than"},
              {"loc": "spec.model.kind", "msg": "unknown model", "type": "x"}]  # fmt: skip
    serve(monkeypatch, lambda _r: problem(422, errors))
    spec = tmp_path / "s.yaml"
    spec.write_text("epochs: 1\n")
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "spec.optimizer.lr: must be > 0" in err and "spec.model.kind: unknown model" in err


@pytest.mark.parametrize(
    ("respond", "code", "words"),
    [
        (lambda: problem(401), 3, "refused the API key from TRAINFORGE_API_KEY"),
        (lambda: problem(503), 3, "failed: detail 503"),
        (lambda: problem(404), 2, "detail 404"),
        (lambda: problem(409), 2, "detail 409"),
    ],
)
def test_http_errors_map_to_exit_codes_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    respond: Callable[[], httpx.Response],
    code: int,
    words: str,
) -> None:
    serve(monkeypatch, lambda _r: respond())
    assert main(["cancel", "j1"]) == code
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_an_unreachable_server_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    serve(monkeypatch, refuse)
    assert main(["jobs", "--json"]) == 3
    assert "cannot reach Trainforge at http://127.0.0.1:8000" in capsys.readouterr().err


def test_bad_options_and_files_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["jobs", "--limit", "0"]) == 2
    assert main(["submit", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["no-such-verb"]) == 2


def test_login_checks_the_key_before_saving_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    keys: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("authorization"))
        if request.headers.get("authorization") != "Bearer tf_good":
            return problem(401)
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    serve(monkeypatch, handler)
    saved = tmp_path / "xdg" / "trainforge" / "config.toml"
    assert main(["login", "--url", "https://tf.example/", "--api-key", "tf_bad"]) == 3
    assert not saved.exists()
    assert main(["login", "--url", "https://tf.example/", "--api-key", "tf_good"]) == 0
    assert keys == ["Bearer tf_bad", "Bearer tf_good"]
    assert saved.stat().st_mode & 0o777 == 0o600
    assert 'url = "https://tf.example"' in saved.read_text()
    assert "saved to" in capsys.readouterr().out

"""The SDK against a mock HTTP server (httpx MockTransport): typed errors, retries, the
Idempotency-Key per submit, pagination, events that resume with Last-Event-ID."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from trainforge import (
    AsyncClient,
    AsyncJob,
    Client,
    Conflict,
    EndEvent,
    InvalidInput,
    InvalidSpec,
    MetricsEvent,
    NotFound,
    ServerError,
    StatusEvent,
    Unauthorized,
    Unreachable,
)
from trainforge.sdk import aio, async_transport, transport

Handler = Callable[[httpx.Request], httpx.Response]
JOB = {"id": "j1", "name": "try", "status": "queued", "status_reason": None}


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[float]:
    for name in ("TRAINFORGE_URL", "TRAINFORGE_API_KEY", "TRAINFORGE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TRAINFORGE_HOME", str(tmp_path / "home"))
    sleeps: list[float] = []
    monkeypatch.setattr(transport, "time", SimpleNamespace(sleep=sleeps.append))
    return sleeps


def client(handler: Handler, **kwargs: Any) -> Client:
    return Client("http://tf.test", "tf_key", transport=httpx.MockTransport(handler), **kwargs)


def problem(status: int, errors: list[dict[str, str]] | None = None) -> httpx.Response:
    body: dict[str, Any] = {"title": "t", "status": status, "detail": f"detail {status}"}
    if errors is not None:
        body["errors"] = errors
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


def test_environment_chooses_the_server_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINFORGE_URL", "http://elsewhere:9000/")
    monkeypatch.setenv("TRAINFORGE_API_KEY", "tf_env")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=JOB)

    with Client(transport=httpx.MockTransport(handler)) as c:
        assert c.url == "http://elsewhere:9000"
        c.job("j1")
    assert str(seen[0].url) == "http://elsewhere:9000/v1/jobs/j1"
    assert seen[0].headers["Authorization"] == "Bearer tf_env"


def test_invalid_spec_lists_every_error_as_loc_msg_pairs() -> None:
    errors = [{"loc": "spec.epochs", "msg": "too big", "type": "x"},
              {"loc": "spec.optimizer.lr", "msg": "must be > 0", "type": "y"}]  # fmt: skip
    c = client(lambda r: problem(422, errors))
    with pytest.raises(InvalidSpec) as err:
        c.submit({"epochs": 10**9})
    assert err.value.errors == [("spec.epochs", "too big"), ("spec.optimizer.lr", "must be > 0")]
    assert err.value.status == 422
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("status", "kind"), [(404, NotFound), (409, Conflict), (401, Unauthorized), (403, Unauthorized)]
)
def test_error_statuses_are_typed(status: int, kind: type[Exception]) -> None:
    with pytest.raises(kind, match=f"detail {status}"):
        client(lambda r: problem(status)).job("nope")


def test_get_is_retried_after_503_and_connect_errors(isolated: list[float]) -> None:
    answers: list[Any] = [
        httpx.ConnectError("refused"),
        problem(503),
        httpx.Response(200, json=JOB),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    assert client(handler).job("j1").id == "j1"
    assert isolated == [0.5, 1.0]  # backoff between the three tries


def test_retries_end_in_typed_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(Unreachable, match=r"cannot reach Trainforge at http://tf\.test"):
        client(refuse, retries=2).job("j1")
    with pytest.raises(ServerError):
        client(lambda r: problem(503), retries=1).job("j1")


def test_a_post_without_idempotency_key_is_not_resent_after_a_503() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return problem(503)

    with pytest.raises(ServerError):
        client(handler).http.post("/v1/jobs/j1/cancel")
    assert calls == ["/v1/jobs/j1/cancel"]


def test_submit_sends_one_idempotency_key_per_call_and_keeps_it_across_retries(
    tmp_path: Path,
) -> None:
    keys: list[str] = []
    bodies: list[dict[str, Any]] = []
    fail_next = [True]

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        bodies.append(json.loads(request.content))
        if fail_next[0]:
            fail_next[0] = False
            return problem(502)
        return httpx.Response(201, json=JOB)

    spec_file = tmp_path / "job.yaml"
    spec_file.write_text("name: from-file\nspec:\n  epochs: 10\n  optimizer: {kind: adam}\n")
    c = client(handler)
    job = c.submit(spec_file, set={"epochs": 5, "optimizer.lr": 3e-4}, name="try")
    c.submit(spec_file)
    assert job.id == "j1"
    assert keys[0] == keys[1] != keys[2]  # the retry kept its key; a new call has its own
    assert bodies[0] == {"spec": {"epochs": 5, "optimizer": {"kind": "adam", "lr": 3e-4}},
                         "name": "try"}  # fmt: skip
    assert bodies[2]["name"] == "from-file"


def test_submit_does_not_change_the_callers_dict() -> None:
    spec: dict[str, Any] = {"epochs": 3}
    client(lambda r: httpx.Response(201, json=JOB)).submit(spec, set={"model.kind": "mlp"})
    assert spec == {"epochs": 3}


def test_a_bad_set_path_is_invalid_input_before_any_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    with pytest.raises(InvalidInput, match=r"set\['epochs.x'\]: epochs is not a mapping"):
        client(handler).submit({"epochs": 3}, set={"epochs.x": 1})
    with pytest.raises(InvalidInput, match="cannot read"):
        client(handler).submit("/nonexistent/spec.yaml")


def test_jobs_iterates_over_every_page() -> None:
    pages = {None: (["a", "b"], "c1"), "c1": (["c"], None)}
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        seen.append(params)
        ids, nxt = pages[params.get("cursor")]
        items = [{**JOB, "id": i} for i in ids]
        return httpx.Response(200, json={"items": items, "next_cursor": nxt})

    ids = [job.id for job in client(handler).jobs(status="running", sweep="s1")]
    assert ids == ["a", "b", "c"]
    assert seen[0]["status"] == "running" and seen[0]["sweep_id"] == "s1"
    assert seen[1]["cursor"] == "c1"


def sse(*events: tuple[int, str, dict[str, Any]]) -> bytes:
    return "".join(
        f"id: {i}\nevent: {kind}\ndata: {json.dumps({'kind': kind, **data})}\n\n"
        for i, kind, data in events
    ).encode()


def test_events_are_typed_and_resume_after_a_dropped_connection() -> None:
    status = (1, "status", {"from_status": "queued", "to_status": "running", "attempt": 1,
                            "reason": None, "at": "t"})  # fmt: skip
    metrics = (2, "metrics", {"attempt": 1, "series": [
        {"name": "val_loss", "points": [{"step": 10, "epoch": 0, "value": "NaN"}]},
        {"name": "accuracy", "points": [{"step": 10, "epoch": 0, "value": 0.5}]}]})  # fmt: skip
    end = (3, "end", {"status": "succeeded", "status_reason": "completed"})
    resumes: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/jobs/j1":
            return httpx.Response(200, json={**JOB, "status": "running"})
        resumes.append(request.headers.get("Last-Event-ID"))
        if len(resumes) == 1:  # the first connection drops after two events
            return httpx.Response(200, content=sse(status, metrics) + b"id: 3\nevent: en")
        return httpx.Response(200, content=sse(end))

    job = client(handler).job("j1")
    events = list(job.events())
    assert resumes == [None, "2"]
    assert [type(e) for e in events] == [StatusEvent, MetricsEvent, EndEvent]
    first, batch, last = events
    assert isinstance(first, StatusEvent) and first.to_status == "running"
    assert isinstance(batch, MetricsEvent)
    assert batch.latest()["accuracy"] == 0.5
    value = batch.latest()["val_loss"]
    assert value is not None and value != value  # NaN
    assert isinstance(last, EndEvent) and last.status_reason == "completed"
    assert job.status == "succeeded"


def test_the_async_client_resumes_events_retries_and_raises_typed_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AsyncClient: the same requests and policies through httpx.AsyncClient -- a 503 retried,
    a prefix resolved, events resumed after a drop and a refused connection (on_reconnect
    told), a 422 as InvalidSpec, every page of the job list."""
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(aio.asyncio, "sleep", no_wait)
    monkeypatch.setattr(async_transport.asyncio, "sleep", no_wait)
    status = (1, "status", {"from_status": "queued", "to_status": "running", "attempt": 1})
    end = (2, "end", {"status": "succeeded", "status_reason": "completed"})
    streams: list[str | None] = []
    full = "abcdef" + "0" * 26
    calls = {"version": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/version":
            calls["version"] += 1
            return (
                problem(503)
                if calls["version"] == 1
                else httpx.Response(200, json={"version": "0.2.0"})
            )
        if path == "/v1/jobs" and request.method == "POST":
            return problem(422, [{"loc": "spec.epochs", "msg": "bad", "type": "t"}])
        if path == "/v1/jobs" and "id_prefix" in request.url.params:
            return httpx.Response(200, json={"items": [{"id": full}], "next_cursor": None})
        if path == "/v1/jobs":
            cursor = request.url.params.get("cursor")
            page = {"items": [{**JOB, "id": "j2"}], "next_cursor": None} if cursor else {
                "items": [{**JOB, "id": "j1"}], "next_cursor": "c1"}  # fmt: skip
            return httpx.Response(200, json=page)
        if path == f"/v1/jobs/{full}":
            return httpx.Response(200, json={**JOB, "id": full, "status": "running"})
        streams.append(request.headers.get("Last-Event-ID"))
        if len(streams) == 1:
            return httpx.Response(200, content=sse(status))  # ends before the job does
        if len(streams) == 2:
            raise httpx.ConnectError("refused")
        return httpx.Response(200, content=sse(end))

    reasons: list[str] = []

    async def scenario() -> tuple[list[Any], list[str], AsyncJob]:
        transport = httpx.MockTransport(handler)
        async with AsyncClient("http://tf.test", "tf_key", transport=transport) as c:
            assert await c.server_version() == "0.2.0"
            with pytest.raises(InvalidSpec) as bad:
                await c.submit({"epochs": 0})
            assert bad.value.errors == [("spec.epochs", "bad")]
            listed = [j.id async for j in c.jobs(page_size=1)]
            job = await c.job("abcdef")
            events = [e async for e in job.events(on_reconnect=reasons.append)]
            return events, listed, job

    events, listed, job = asyncio.run(scenario())
    assert listed == ["j1", "j2"]
    assert streams == [None, "1", "1"]
    assert len(reasons) == 2 and "refused" in reasons[1]
    assert [type(e) for e in events] == [StatusEvent, EndEvent]
    assert job.id == full and job.status == "succeeded"
    assert waits[0] == 0.5  # the 503's retry, then the two reconnects' waits
    assert waits[1:] == [0.5, 1.0]


def test_metrics_and_predict() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/metrics"):
            assert request.url.params["name"] == "val_accuracy"
            points = [{"step": 5, "epoch": 0, "value": 0.8}, {"step": 10, "epoch": 1, "value": 0.9}]
            return httpx.Response(200, json={"series": [{"name": "val_accuracy",
                                                         "points": points}]})  # fmt: skip
        if request.url.path.endswith("/predict"):
            assert json.loads(request.content) == {"instances": [{"x": 1.0}]}
            return httpx.Response(200, json={"predictions": [{"value": 2.5}]})
        return httpx.Response(200, json=JOB)

    job = client(handler).job("j1")
    assert [(p.step, p.value) for p in job.metrics("val_accuracy")] == [(5, 0.8), (10, 0.9)]
    assert job.predict([{"x": 1.0}]) == [{"value": 2.5}]


def test_server_version_warns_when_majors_differ() -> None:
    from trainforge import __version__

    same = client(lambda r: httpx.Response(200, json={"version": __version__, "api": "v1"}))
    assert same.server_version() == __version__
    other = client(lambda r: httpx.Response(200, json={"version": "99.1.0", "api": "v1"}))
    with pytest.warns(UserWarning, match=r"server runs trainforge 99\.1\.0"):
        assert other.server_version() == "99.1.0"

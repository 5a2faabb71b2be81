"""GET /v1/jobs/{id}/events (Server-Sent Events): order, ids, Last-Event-ID resume,
keep-alives, live latency, the end of the stream."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from api.db.session import session_factory
from api.jobs import events_router
from api.ledger import metrics as metrics_repo
from api.ledger import repository as repo
from api.settings import Settings
from tests.conftest import FakeQueue, free_port
from worker.runner import run_job

SPEC = {
    "dataset": {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 16},
    "model": {"kind": "mlp", "hidden_units": [8]},
    "epochs": 3,
    "checkpointing": {"every_n_epochs": 1},
}


@dataclass
class Event:
    event: str = "message"
    id: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(lines: Iterable[str]) -> Iterator[Event]:
    """A minimal SSE parser (WHATWG rules for the fields this API uses)."""
    current = Event()
    touched = False
    for line in lines:
        if line == "":
            if touched:
                yield current
            current, touched = Event(), False
            continue
        touched = True
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            current.comments.append(value)
        elif name == "event":
            current.event = value
        elif name == "id":
            current.id = value
        elif name == "data":
            current.data = f"{current.data}\n{value}" if current.data else value


def read_stream(client: TestClient, url: str, **kw: Any) -> list[Event]:
    with client.stream("GET", url, **kw) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return [e for e in parse_sse(r.iter_lines()) if e.id is not None]


def finished_job(client: TestClient, settings: Settings) -> str:
    job_id: str = client.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    run_job(job_id, settings)
    return job_id


def test_a_finished_job_replays_every_event_in_order_then_end(
    client: TestClient, settings: Settings
) -> None:
    job_id = finished_job(client, settings)
    got = read_stream(client, f"/v1/jobs/{job_id}/events")
    kinds = [e.event for e in got]
    assert kinds[:2] == ["status", "status"] and kinds[-2:] == ["status", "end"]
    assert [e.json["to_status"] for e in got if e.event == "status"] == [
        "queued",
        "running",
        "succeeded",
    ]
    assert kinds.count("metrics") >= 3 and kinds.count("checkpoint") == 3  # 2 periodic + final
    ids = [int(e.id or 0) for e in got]
    assert ids[:-1] == sorted(set(ids[:-1])) and ids[-1] == ids[-2]  # `end` repeats the last id
    for e in got:
        assert e.json["kind"] == e.event  # data is a JobEvent, tagged like the event
    metrics = [e.json for e in got if e.event == "metrics"]
    names = {s["name"] for m in metrics for s in m["series"]}
    assert {"loss", "val_loss", "accuracy"} <= names
    ckpt = next(e.json for e in got if e.event == "checkpoint")
    assert {"id", "step", "sha256", "size_bytes", "is_best", "deleted"} <= set(ckpt)
    # checkpoints come after the metrics of their epoch
    first_ckpt = kinds.index("checkpoint")
    assert "metrics" in kinds[:first_ckpt]
    assert got[-1].json == {"kind": "end", "status": "succeeded", "status_reason": "completed"}


def test_last_event_id_resumes_with_exactly_what_was_missed(
    client: TestClient, settings: Settings
) -> None:
    job_id = finished_job(client, settings)
    url = f"/v1/jobs/{job_id}/events"
    full = read_stream(client, url)
    for cut in (1, len(full) // 2, len(full) - 2):
        last_seen = full[cut - 1].id
        resumed = read_stream(client, url, headers={"Last-Event-ID": str(last_seen)})
        assert [(e.id, e.event, e.data) for e in resumed] == [
            (e.id, e.event, e.data) for e in full[cut:]
        ]
        by_query = read_stream(client, url, params={"after": last_seen})
        assert [e.id for e in by_query] == [e.id for e in resumed]
    # Reconnecting after the end gets the end again, and nothing else.
    again = read_stream(client, url, headers={"Last-Event-ID": str(full[-1].id)})
    assert [e.event for e in again] == ["end"]


def test_errors_come_before_the_stream_as_problems(client: TestClient) -> None:
    r = client.get("/v1/jobs/nope/events")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    job_id = client.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    r = client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "abc"})
    assert r.status_code == 422
    assert client.get(f"/v1/jobs/{job_id}/events", headers={"Authorization": ""}).status_code == 401


# ----------------------------------------------------------------------------- live


@pytest.fixture
def live(settings: Settings, fake_queue: FakeQueue) -> Iterator[str]:
    """The app behind a real uvicorn server: a stream that stays open, like production."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, queue=fake_queue), port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield base
    server.should_exit = True
    thread.join(timeout=10)


def first_step(e: Event) -> int:
    step: int = e.json["series"][0]["points"][0]["step"]
    return step


@pytest.mark.e2e
def test_live_points_arrive_within_a_second_with_keepalives(
    live: str, settings: Settings, admin_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_router, "KEEPALIVE_SECONDS", 0.5)
    auth = {"Authorization": f"Bearer {admin_key}"}
    job_id = httpx.post(f"{live}/v1/jobs", json={"spec": SPEC}, headers=auth).json()["id"]
    factory = session_factory(settings.resolved_database_url)
    seen: list[tuple[float, Event]] = []

    def listen() -> None:
        with httpx.stream("GET", f"{live}/v1/jobs/{job_id}/events", headers=auth, timeout=30) as r:
            for e in parse_sse(r.iter_lines()):
                seen.append((time.monotonic(), e))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(1.5)  # connected and idle: keep-alive comments flow
    with factory() as s:
        assert repo.claim_job(s, job_id, 30) == 1
        s.commit()
    latencies = []
    for step in (1, 2, 3):
        with factory() as s:
            metrics_repo.write_metrics(
                s, job_id, 1, [metrics_repo.Point("loss", step, 0, 1.0 / step)]
            )
            s.commit()
        flushed = time.monotonic()
        deadline = flushed + 5
        while time.monotonic() < deadline:
            hit = [t for t, e in seen if e.event == "metrics" and first_step(e) == step]
            if hit:
                latencies.append(hit[0] - flushed)
                break
            time.sleep(0.01)
    assert len(latencies) == 3 and max(latencies) < 1.0, latencies
    with factory() as s:
        repo.finish_job(s, job_id, 1, status="succeeded", reason="completed")
        s.commit()
    listener.join(timeout=5)
    assert not listener.is_alive()  # the server closed the stream after `end`
    kinds = [e.event for _, e in seen if e.id is not None]
    assert kinds == ["status", "status", "metrics", "metrics", "metrics", "status", "end"]
    assert any("keep-alive" in c for _, e in seen for c in e.comments)

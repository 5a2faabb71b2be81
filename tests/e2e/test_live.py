"""Following a job live against a real `trainforge up`: an SSE client sees the job's
status changes, metric batches and checkpoints while it runs, in order, then `end`; the
checkpoint it announced downloads and loads into the spec's model."""

from __future__ import annotations

import hashlib
import socket
import struct
import time

import httpx
import pytest
from safetensors.torch import load as st_load

from tests.api.test_checkpoints_api import spec_model
from tests.api.test_events import Event, parse_sse
from tests.e2e.test_up import Server, server  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e

SPEC = {
    "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 16},
    "model": {"kind": "mlp", "hidden_units": [64]},
    "epochs": 8,
    "seed": 0,
    "checkpointing": {"every_n_epochs": 2, "keep_last": 2, "keep_best": 1},
}


def test_an_sse_client_follows_a_running_job_to_its_end(server: Server) -> None:  # noqa: F811
    auth = {"Authorization": f"Bearer {server.key}"}
    r = httpx.post(f"{server.base}/v1/jobs", json={"spec": SPEC}, headers=auth)
    assert r.status_code == 201, r.text
    job_url = server.base + r.headers["location"]
    got: list[tuple[float, Event]] = []
    with httpx.stream("GET", f"{job_url}/events", headers=auth, timeout=120) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for event in parse_sse(stream.iter_lines()):
            if event.id is not None:
                got.append((time.monotonic(), event))
    # The server closed the stream after `end`.
    kinds = [e.event for _, e in got]
    statuses = [e.json["to_status"] for _, e in got if e.event == "status"]
    assert statuses == ["queued", "running", "succeeded"], server.log.read_text()[-3000:]
    assert kinds[-1] == "end" and got[-1][1].json["status"] == "succeeded"
    running_at = kinds.index("status", 1)
    assert kinds[running_at + 1 :].count("metrics") >= SPEC["epochs"]  # type: ignore[operator]
    assert kinds.count("checkpoint") == 4  # after epochs 2, 4, 6 (1-based), and the final one
    assert (
        kinds.index("metrics") < kinds.index("checkpoint") < kinds.index("status", running_at + 1)
    )
    ids = [int(e.id or 0) for _, e in got[:-1]]
    assert ids == sorted(set(ids))
    # Live, not replayed at the end: the first metrics arrived well before the end.
    first_metrics = next(t for t, e in got if e.event == "metrics")
    assert got[-1][0] - first_metrics > 0.2
    epochs = sorted(
        p["epoch"]
        for _, e in got
        if e.event == "metrics"
        for s in e.json["series"]
        if s["name"] == "val_accuracy"
        for p in s["points"]
    )
    assert epochs == list(range(8))

    last = [e.json for _, e in got if e.event == "checkpoint"][-1]
    listed = httpx.get(f"{job_url}/checkpoints", headers=auth).json()["items"]
    assert last["id"] == listed[-1]["id"]
    body = httpx.get(f"{job_url}/checkpoints/{last['id']}/download", headers=auth).content
    assert hashlib.sha256(body).hexdigest() == last["sha256"]
    spec_model(SPEC).load_state_dict(st_load(body))


def test_clients_that_leave_mid_stream_leave_nothing_in_the_log(server: Server) -> None:  # noqa: F811
    """A follower that goes away (closes, or resets the connection) is not an error: the
    server logs no ASGI exception or traceback, and the job and other clients go on."""
    auth = {"Authorization": f"Bearer {server.key}"}
    spec = {**SPEC, "dataset": {**SPEC["dataset"], "batch_size": 4}, "epochs": 12}  # type: ignore[dict-item]
    r = httpx.post(f"{server.base}/v1/jobs", json={"spec": spec}, headers=auth)
    assert r.status_code == 201, r.text
    job_url = server.base + r.headers["location"]
    logged_before = len(server.log.read_text())
    for _ in range(4):  # a clean close after a few lines, while the job trains
        with httpx.stream("GET", f"{job_url}/events", headers=auth, timeout=60) as stream:
            for n, _line in enumerate(stream.iter_lines()):
                if n >= 4:
                    break
    url = httpx.URL(job_url + "/events")
    assert httpx.get(job_url, headers=auth).json()["status"] in ("queued", "running")
    for _ in range(3):  # an abrupt one: a TCP reset (SO_LINGER 0) in the middle of it
        sock = socket.create_connection((url.host, url.port), timeout=30)
        sock.sendall(
            f"GET {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.host}\r\n"
            f"Authorization: Bearer {server.key}\r\n\r\n".encode()
        )
        assert sock.recv(256).startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    assert httpx.get(job_url, headers=auth).json()["status"] in ("queued", "running")
    # A follower that stays sees the job to its end (the server wrote to every stream
    # meanwhile, so it has met each departed client's closed socket).
    with httpx.stream("GET", f"{job_url}/events", headers=auth, timeout=300) as stream:
        events = [e.event for e in parse_sse(stream.iter_lines())]
    assert events[-1] == "end"
    assert httpx.get(job_url, headers=auth).json()["status"] == "succeeded"
    # The departed clients' streams met their `end` at the same event-hub tick as the
    # one above; a moment more for a logger to have flushed anything it would write.
    time.sleep(1)
    log = server.log.read_text()[logged_before:]
    for sign in ("Exception in ASGI application", "Traceback", "ERROR"):
        assert sign not in log, log[-4000:]

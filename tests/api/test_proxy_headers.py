"""What the README's reverse-proxy advice relies on: event streams say `X-Accel-Buffering: no`
(nginx then passes each event through at once) and are not cached."""

from __future__ import annotations

from fastapi.testclient import TestClient

DIGITS = {"dataset": {"source": {"kind": "builtin", "name": "digits"}}}


def test_event_streams_ask_proxies_not_to_buffer(client: TestClient) -> None:
    job = client.post("/v1/jobs", json={"spec": DIGITS}).json()
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200  # ended: it closes
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-accel-buffering"] == "no"
        body = r.read().decode()
    assert "event: end" in body

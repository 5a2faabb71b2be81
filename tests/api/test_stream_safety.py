"""An event stream stops when its key is revoked, and a client that hangs up is not an
error in the server's log (issue 18, item 8). A real uvicorn server, as in production."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from api.app import create_app
from api.db.session import session_factory
from api.jobs import events_router
from api.settings import Settings
from api.teams.repository import revoke_key
from tests.api.test_events import SPEC, Event, parse_sse
from tests.conftest import FakeQueue, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def live(settings: Settings, fake_queue: FakeQueue) -> Iterator[str]:
    """The app behind a real uvicorn server (as tests/api/test_events.py's)."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, queue=fake_queue), port=free_port(), log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(timeout=10)


def _member_key(base: str, admin_key: str) -> tuple[str, str]:
    admin = {"Authorization": f"Bearer {admin_key}"}
    httpx.post(f"{base}/v1/admin/teams", json={"name": "streamers"}, headers=admin)
    created = httpx.post(f"{base}/v1/admin/keys", json={"team": "streamers"}, headers=admin)
    body = created.json()
    return str(body["id"]), str(body["key"])


def test_a_stream_closes_once_its_key_is_revoked(
    live: str, settings: Settings, admin_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_router, "KEY_CHECK_SECONDS", 0.5)
    key_id, key = _member_key(live, admin_key)
    auth = {"Authorization": f"Bearer {key}"}
    job_id = httpx.post(f"{live}/v1/jobs", json={"spec": SPEC}, headers=auth).json()["id"]
    seen: list[Event] = []
    opened = threading.Event()

    def listen() -> None:
        url = f"{live}/v1/jobs/{job_id}/events"
        with httpx.stream("GET", url, headers=auth, timeout=60) as r:
            opened.set()
            for e in parse_sse(r.iter_lines()):
                seen.append(e)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(30)
    # The job stays queued (no worker): only the revocation can end this stream.
    with session_factory(settings.resolved_database_url)() as s:
        revoke_key(s, key_id)
        s.commit()
    listener.join(timeout=60)
    assert not listener.is_alive(), "the stream kept going after its key was revoked"
    assert all(e.event != "end" for e in seen)  # closed for the key, not for the job
    again = httpx.get(f"{live}/v1/jobs/{job_id}/events", headers=auth)
    assert again.status_code == 401


def test_a_client_hanging_up_logs_no_exception(
    live: str, admin_key: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_router, "KEEPALIVE_SECONDS", 0.2)  # writes after the hang-up
    auth = {"Authorization": f"Bearer {admin_key}"}
    job_id = httpx.post(f"{live}/v1/jobs", json={"spec": SPEC}, headers=auth).json()["id"]
    caplog.set_level(logging.INFO)
    uvicorn_log = logging.getLogger("uvicorn.error")  # uvicorn's loggers do not reach the root
    uvicorn_log.addHandler(caplog.handler)
    for _ in range(3):
        with httpx.stream("GET", f"{live}/v1/jobs/{job_id}/events", headers=auth) as r:
            next(r.iter_lines())  # connected; then the client goes away mid-stream
    time.sleep(2.5)  # the server notices on its next write or poll
    uvicorn_log.removeHandler(caplog.handler)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]


@pytest.mark.alone  # a latency bound: make test runs it with nothing beside it
def test_a_revocation_reaches_an_open_stream_within_a_second(
    live: str, settings: Settings, admin_key: str
) -> None:
    # Issue 28, 9: the stream's own key check runs every KEY_CHECK_SECONDS (30 s); the event
    # hub reads recent revocations at each tick (0.25 s) and wakes the key's streams.
    key_id, key = _member_key(live, admin_key)
    auth = {"Authorization": f"Bearer {key}"}
    job_id = httpx.post(f"{live}/v1/jobs", json={"spec": SPEC}, headers=auth).json()["id"]
    opened, closed_at = threading.Event(), []

    def listen() -> None:
        with httpx.stream("GET", f"{live}/v1/jobs/{job_id}/events", headers=auth, timeout=60) as r:
            opened.set()
            for _ in r.iter_lines():
                pass
        closed_at.append(time.monotonic())

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(30)
    time.sleep(0.5)  # the stream is waiting on the hub
    with session_factory(settings.resolved_database_url)() as s:
        revoke_key(s, key_id)
        s.commit()
    revoked = time.monotonic()
    listener.join(timeout=30)
    assert closed_at, "the stream kept going after its key was revoked"
    # Documented bound 1 s; the margin is for a shared test machine (before: up to 5 s).
    assert closed_at[0] - revoked < 2.0

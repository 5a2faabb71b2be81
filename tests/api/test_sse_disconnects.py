"""A client that leaves an event stream never turns into an ASGI exception (issue 28, 2).

The audit saw ``anyio.BrokenResourceError`` raised from FastAPI's
``_keepalive_inserter`` on 53 of 303 streams: when the client goes while the
producer is ahead of the socket, the response stops reading the stream's
one-item buffer; the inserter blocks sending into it; the request's exit stack
closes the buffer's receiving end before it cancels the inserter, which wakes
with ``BrokenResourceError`` and the task group raises it out of the app.
These tests drive the app as a server would: many streams over a job with
many events, each client stalling and then disconnecting at a random point
(before the first event, mid-stream, during a keep-alive).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from starlette.types import Message

from api.app import create_app
from api.db.session import session_factory
from api.ledger import events as events_repo
from api.settings import Settings
from tests.conftest import FakeQueue
from tests.worker.helpers import insert_job

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def busy_job(settings: Settings) -> Iterator[str]:
    with session_factory(settings.resolved_database_url)() as s:
        job_id = insert_job(s, {"dataset": {"source": {"kind": "builtin", "name": "iris"}}})
        for i in range(600):  # far more than a page: the producer is always ahead
            events_repo.add_event(s, job_id, "progress", {"kind": "progress", "step": i})
        s.commit()
    yield job_id


async def _one_stream(
    app: FastAPI, key: str, job_id: str, leave_after: int, spec_version: str
) -> None:
    """One client: reads ``leave_after`` messages, then is gone.

    ASGI 2.4 (uvicorn's): the server's ``send`` raises ``OSError`` once the client is
    gone; before 2.4 the app hears ``http.disconnect`` while its ``send`` hangs."""
    gone = anyio.Event()
    sent = 0
    request_sent = False

    async def receive() -> Message:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal sent
        sent += 1
        if sent >= leave_after:
            gone.set()
            if spec_version == "2.4":
                raise OSError("the client is gone")
            await anyio.sleep_forever()  # a client that stopped reading: the socket is full

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/v1/jobs/{job_id}/events",
        "raw_path": f"/v1/jobs/{job_id}/events".encode(),
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {key}".encode()), (b"host", b"testserver")],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    with anyio.fail_after(30):
        await app(scope, receive, send)


async def test_many_streams_that_leave_at_random_points_raise_nothing(
    settings: Settings, admin_key: str, busy_job: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fastapi.routing

    monkeypatch.setattr(fastapi.routing, "_PING_INTERVAL", 0.01)  # keep-alives all the time
    app = create_app(settings, queue=FakeQueue(settings))
    rng = random.Random(28)
    async with app.router.lifespan_context(app), anyio.create_task_group() as tg:
        for i in range(60):
            # leave after the headers, a few events or many, in both ASGI dialects
            leave = rng.choice([1, 2, 3, 5, 20, 200])
            version = "2.4" if i % 2 else "2.3"
            tg.start_soon(_one_stream, app, admin_key, busy_job, leave, version)


def _disconnecting_receive() -> Any:
    async def receive() -> Message:
        return {"type": "http.disconnect"}

    return receive


async def _ignore(message: Message) -> None:
    return None


async def test_the_keepalive_inserters_broken_resource_after_a_disconnect_is_dropped() -> None:
    from api.stream_guard import StreamGuard

    async def sse_route(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # the client went (http.disconnect), then the exit stack ran:
        raise BaseExceptionGroup("unhandled errors in a TaskGroup", [anyio.BrokenResourceError()])

    scope = {"type": "http", "method": "GET", "path": "/v1/jobs/x/events"}
    await StreamGuard(sse_route)(scope, _disconnecting_receive(), _ignore)  # nothing raised


async def test_other_errors_and_errors_while_the_client_listens_still_propagate() -> None:
    from api.stream_guard import StreamGuard

    async def broken_route(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        raise ValueError("a real bug")

    async def still_listening(scope: Any, receive: Any, send: Any) -> None:
        raise anyio.BrokenResourceError()  # no disconnect seen: not a client that left

    scope = {"type": "http", "method": "GET", "path": "/v1/jobs/x/events"}
    with pytest.raises(ValueError, match="a real bug"):
        await StreamGuard(broken_route)(scope, _disconnecting_receive(), _ignore)
    with pytest.raises(anyio.BrokenResourceError):
        await StreamGuard(still_listening)(scope, _disconnecting_receive(), _ignore)

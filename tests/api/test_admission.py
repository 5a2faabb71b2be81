"""Admission control and the event hub, in-process (issue 18, item 1).

The whole-server behaviour under a real burst is tests/e2e/test_load.py; here the
two mechanisms are pinned down on their own, deterministically.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from starlette.types import Message, Receive, Scope, Send

from api.admission import AdmissionControl, AdmissionGate
from api.db.session import session_factory
from api.jobs.event_hub import EventHub
from api.ledger import events as events_repo
from api.settings import Settings
from tests.worker.helpers import insert_job

pytestmark = pytest.mark.anyio
IRIS = {"kind": "builtin", "name": "iris"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Inner:
    """An app whose requests stay inside until released; some answer as a stream."""

    def __init__(self) -> None:
        self.inside = 0
        self.release = anyio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.inside += 1
        streamed = scope["path"].endswith("/events")
        kind = b"text/event-stream" if streamed else b"application/json"
        if streamed:
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", kind)]}
            )
        await self.release.wait()
        if not streamed:
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", kind)]}
            )
        await send({"type": "http.response.body", "body": b"{}"})


async def call(app: Any, path: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": []}
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers, json.loads(body or b"{}")


def gate(limit: int, waiting: int, wait: float) -> AdmissionGate:
    return AdmissionGate(limit=limit, max_waiting=waiting, wait_seconds=wait, threads=8)


async def test_beyond_the_slots_and_the_queue_the_answer_is_a_fast_503_with_retry_after():
    inner, g = Inner(), gate(limit=2, waiting=1, wait=30)
    app = AdmissionControl(inner, gate=g)
    results: list[int] = []

    async def request(path: str) -> None:
        results.append((await call(app, path))[0])

    async with anyio.create_task_group() as tg:
        for _ in range(3):  # two inside, one waiting
            tg.start_soon(request, "/v1/jobs")
        await wait_until(lambda: inner.inside == 2 and g.waiting == 1)
        status, headers, body = await call(app, "/v1/jobs")  # the queue is full: at once
        assert status == 503 and int(headers["retry-after"]) >= 1
        assert body["status"] == 503 and "limit" in body["detail"]
        healthz = AdmissionControl(Inner(), gate=g)  # outside /v1: never queued
        healthz.app.release.set()  # type: ignore[attr-defined]
        assert (await call(healthz, "/healthz"))[0] == 200
        inner.release.set()  # the two finish; the waiting one gets its slot
    assert results == [200, 200, 200]
    assert inner.inside == 3 and g.active == 0 and g.refused == 1


async def test_a_request_that_waits_past_the_limit_is_refused_not_hung():
    inner, g = Inner(), gate(limit=1, waiting=5, wait=0.2)
    app = AdmissionControl(inner, gate=g)
    async with anyio.create_task_group() as tg:
        tg.start_soon(call, app, "/v1/jobs")
        await wait_until(lambda: inner.inside == 1)
        status, headers, _ = await call(app, "/v1/jobs")
        assert status == 503 and "retry-after" in headers
        inner.release.set()
    assert g.active == 0


async def test_a_stream_gives_its_slot_back_when_its_headers_go_out():
    inner, g = Inner(), gate(limit=1, waiting=0, wait=30)
    app = AdmissionControl(inner, gate=g)
    async with anyio.create_task_group() as tg:
        tg.start_soon(call, app, "/v1/jobs/j/events")  # stays open, as SSE does
        await wait_until(lambda: inner.inside == 1)
        assert g.active == 0
        tg.start_soon(call, app, "/v1/jobs")  # admitted although the stream is open
        await wait_until(lambda: inner.inside == 2)
        inner.release.set()


async def wait_until(condition: Any) -> None:
    with anyio.fail_after(10):
        while not condition():
            await anyio.sleep(0.01)


async def test_the_hub_reads_the_table_once_per_tick_for_any_number_of_streams(
    settings: Settings,
):
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        quiet, busy = (insert_job(s, {"dataset": {"source": IRIS}}) for _ in range(2))
        s.commit()
    hub = EventHub(factory, tick_seconds=0.05)
    woke: list[str] = []

    async def stream(job_id: str) -> None:
        await hub.wait(job_id, cursor=0, timeout=60)
        woke.append(job_id)

    def write_event() -> None:
        with factory() as s:
            events_repo.add_event(s, busy, events_repo.STATUS, {"to_status": "running"})
            s.commit()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for job_id in [quiet] * 50 + [busy] * 50:
                tg.start_soon(stream, job_id)
            await wait_until(lambda: hub.polls >= 3)
            await anyio.to_thread.run_sync(write_event)
            await wait_until(lambda: len(woke) == 50)
            polls = hub.polls
            assert woke == [busy] * 50  # the news woke its job's streams, not the others
            assert polls < 100  # one query per tick, not one per stream and tick
            tg.cancel_scope.cancel()


async def test_the_hub_finds_an_event_whose_id_was_skipped_over(settings: Settings):
    # Two writers: one takes id n+1, the other n+2 and commits first. The hub's look reads
    # up to n+2; the first commits after it. Its job's streams must still wake within a
    # tick, not at their fallback read (issue 28, 13: the fallback is now 10 s).
    from sqlalchemy import func, insert, select

    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        late, early = (insert_job(s, {"dataset": {"source": IRIS}}) for _ in range(2))
        s.commit()
        top = s.scalar(select(func.max(events_repo.JobEvent.id))) or 0
    hub = EventHub(factory, tick_seconds=0.05)
    woke: list[str] = []

    async def stream(job_id: str) -> None:
        await hub.wait(job_id, cursor=top, timeout=60)
        woke.append(job_id)

    def write(job_id: str, event_id: int) -> None:
        with factory() as s:
            s.execute(insert(events_repo.JobEvent).values(
                id=event_id, job_id=job_id, kind=events_repo.STATUS, payload={}))  # fmt: skip
            s.commit()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream, late)
            tg.start_soon(stream, early)
            await wait_until(lambda: hub.polls >= 2)
            await anyio.to_thread.run_sync(write, early, top + 2)
            await wait_until(lambda: woke == [early])
            polls = hub.polls
            await wait_until(lambda: hub.polls >= polls + 2)  # n+1 was skipped over
            await anyio.to_thread.run_sync(write, late, top + 1)
            await wait_until(lambda: woke == [early, late])
            tg.cancel_scope.cancel()

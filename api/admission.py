"""Admission control: a bounded number of requests inside the app, a bounded queue
in front of it, and a fast 503 + ``Retry-After`` beyond that.

Why: a request's thread holds a pooled SQL connection from its auth query to its
end. With more requests in flight than connections (or threads), threads and
connections wait on each other and a burst turns into 30-second 500s and a
stalled ``/healthz``. Here at most ``limit`` requests run at once; the pool is
sized above that (``api.db.session``), so a thread never waits on the pool.
The next ``max_waiting`` wait in FIFO order, without a thread, for at most
``wait_seconds``; anyone else is refused at once. ``/healthz`` bypasses all of it.

A streamed response (SSE, a download) gives its slot back when its headers go
out: what follows reads the database in short sessions of its own and must not
occupy a slot while it waits on a slow client.
"""

from __future__ import annotations

import json
import math

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import PROBLEM_JSON

STREAMED = (b"text/event-stream", b"application/octet-stream", b"application/zip")


class AdmissionGate:
    """The slots, the queue and their counters; one per app (``app.state.admission``)."""

    def __init__(self, *, limit: int, max_waiting: int, wait_seconds: float, threads: int) -> None:
        self.limit, self.max_waiting, self.wait_seconds = limit, max_waiting, wait_seconds
        self.threads = threads  # the worker-thread limiter's size: slots + stream threads
        self._slots = anyio.Semaphore(limit)
        self.waiting = 0
        self.refused = 0
        self._sized: object | None = None

    @property
    def active(self) -> int:
        return self.limit - self._slots.value

    def size_thread_pool(self) -> None:
        # anyio's default limiter (40 threads) is per event loop: size it on first use.
        limiter = anyio.to_thread.current_default_thread_limiter()
        if self._sized is not limiter:
            limiter.total_tokens = self.threads
            self._sized = limiter

    async def admit(self) -> bool:
        try:
            self._slots.acquire_nowait()
            return True
        except anyio.WouldBlock:
            pass
        if self.waiting >= self.max_waiting:
            self.refused += 1
            return False
        self.waiting += 1
        try:
            with anyio.move_on_after(self.wait_seconds):
                await self._slots.acquire()
                return True
            self.refused += 1
            return False
        finally:
            self.waiting -= 1

    def release(self) -> None:
        self._slots.release()


class AdmissionControl:
    def __init__(
        self, app: ASGIApp, *, gate: AdmissionGate, prefixes: tuple[str, ...] = ("/v1/",)
    ) -> None:
        self.app, self.gate, self.prefixes = app, gate, prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.gate.size_thread_pool()
        if not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        if not await self.gate.admit():
            await _refuse(send, scope["path"], self.gate.wait_seconds)
            return
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.gate.release()

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and _streamed(message):
                release()
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            release()


def _streamed(message: Message) -> bool:
    for name, value in message.get("headers", []):
        if name.lower() == b"content-type":
            return bool(value.split(b";")[0].strip().lower() in STREAMED)
    return False


async def _refuse(send: Send, path: str, wait_seconds: float) -> None:
    retry_after = str(max(1, math.ceil(wait_seconds / 2)))
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Service busy",
            "status": 503,
            "detail": "The API is at its concurrent-request limit and its queue is full or "
            f"the wait passed; retry after {retry_after} s.",
            "instance": path,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", retry_after.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

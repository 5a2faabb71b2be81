"""Load probes for the API: bursts of requests and streams, stalled downloads, and a
/healthz probe running beside them. Used by tests/e2e/test_load.py and bench-like runs.

Every request gets an answer or an error string (never an unbounded wait): the
client's timeout is the hang detector.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HANG_SECONDS = 60.0  # a request still unanswered after this counts as a hang


@dataclass
class BurstResult:
    statuses: list[int | str] = field(default_factory=list)
    retry_after_missing: int = 0  # 503/429 answers without a Retry-After header
    healthz_seconds: list[float] = field(default_factory=list)
    healthz_failures: list[str] = field(default_factory=list)

    def count(self, status: int | str) -> int:
        return sum(1 for s in self.statuses if s == status)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for s in self.statuses:
            counts[str(s)] = counts.get(str(s), 0) + 1
        worst = max(self.healthz_seconds, default=float("nan"))
        return f"answers {counts}; healthz probes {len(self.healthz_seconds)}, worst {worst:.3f}s"


def probe_healthz(base: str) -> None:
    """Runs in its own process (``python -m tests.load probe URL``) so that the burst's
    client work cannot delay it: one line per probe, "<seconds> <status or error>",
    until stdin closes."""
    with suppress(PermissionError):
        # It measures the server, not its own scheduling on a loaded host.
        os.nice(-10)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    with httpx.Client(base_url=base, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                outcome = str(client.get("/healthz", timeout=HANG_SECONDS).status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            print(f"{time.perf_counter() - start:.4f} {outcome}", flush=True)
            stop.wait(0.1)


@contextmanager
def healthz_prober(base: str, result: BurstResult) -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.load", "probe", base],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # its first probe is answered: the burst may start
    try:
        yield
    finally:
        out, _ = proc.communicate(input="", timeout=HANG_SECONDS + 10)
        for line in [first, *out.splitlines()]:
            if not line.strip():
                continue
            seconds, outcome = line.strip().split(" ", 1)
            result.healthz_seconds.append(float(seconds))
            if outcome != "200":
                result.healthz_failures.append(outcome)


async def burst(
    base: str,
    n: int,
    request: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response | str]],
) -> BurstResult:
    """Fire ``n`` requests at once while /healthz is probed on its own client."""
    result = BurstResult()
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=0)
    with healthz_prober(base, result):
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=HANG_SECONDS) as client:

            async def one(i: int) -> int | str:
                try:
                    r = await request(client, i)
                except httpx.HTTPError as exc:
                    return f"error {type(exc).__name__}"
                if isinstance(r, str):
                    return r
                if r.status_code in (429, 503) and "retry-after" not in r.headers:
                    result.retry_after_missing += 1
                return r.status_code

            result.statuses = list(await asyncio.gather(*(one(i) for i in range(n))))
    return result


def submit(headers: dict[str, str], spec: dict[str, Any]) -> Callable[..., Awaitable[Any]]:
    async def request(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.post(
            "/v1/jobs", json={"spec": spec, "name": f"burst-{i}"}, headers=headers
        )

    return request


def open_stream(
    headers: dict[str, str], job_id: str, hold_seconds: float
) -> Callable[..., Awaitable[Any]]:
    """Opens the job's SSE stream, reads its first line and keeps it open (the server
    polls for it meanwhile) for ``hold_seconds``: 'opened', or the answer if refused."""

    async def request(client: httpx.AsyncClient, _: int) -> httpx.Response | str:
        async with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as r:
            if r.status_code != 200:
                await r.aread()
                return r
            async for _line in r.aiter_lines():
                await asyncio.sleep(hold_seconds)
                return "opened"
            return "closed without a line"

    return request


def stalled_downloads(port: int, path: str, key: str, count: int) -> list[socket.socket]:
    """Clients that ask for a download and never read: their sockets stay open, full."""
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the window fills at once
        s.connect(("127.0.0.1", port))
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n"
        s.sendall(request.encode())
        sockets.append(s)
    return sockets


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        probe_healthz(sys.argv[2])

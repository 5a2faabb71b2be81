"""The reconnect policy of a job's event stream, shared by ``Job.events()`` and
``AsyncJob.events()`` (and through the first, ``trainforge follow``): which failures are
retried, the waits between tries (0.5 s doubling to 5 s), and when to give up."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from trainforge.sdk.errors import TrainforgeError, Unreachable

RECONNECT_FOR = 120.0  # reconnect this long without an event, then Unreachable
STREAM_READ_TIMEOUT = 45.0  # the server sends a keep-alive every 15 s
FIRST_DELAY, MAX_DELAY = 0.5, 5.0

OnReconnect = Callable[[str], None]


def retry_reason(exc: BaseException) -> str | None:
    """Why a stream failed, when it is worth reconnecting (a transport error, a 5xx);
    None for anything else (a 404, a refused key), which the caller raises."""
    if isinstance(exc, httpx.HTTPError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, TrainforgeError) and exc.status is not None and exc.status >= 500:
        return exc.message
    return None


class Reconnects:
    """One stream's reconnect state: ``event()`` on every event received; ``failed(reason)``
    after a drop returns the seconds to wait before the next try (and calls
    ``on_reconnect(reason)``), or raises ``Unreachable`` once ``reconnect_for`` seconds
    have passed without an event."""

    def __init__(
        self, what: str, reconnect_for: float, on_reconnect: OnReconnect | None = None
    ) -> None:
        self.what, self.reconnect_for, self.on_reconnect = what, reconnect_for, on_reconnect
        self.failing_since: float | None = None
        self.delay = FIRST_DELAY

    def event(self) -> None:
        self.failing_since, self.delay = None, FIRST_DELAY

    def failed(self, reason: str) -> float:
        now = time.monotonic()
        self.failing_since = self.failing_since or now
        if now - self.failing_since > self.reconnect_for:
            raise Unreachable(f"lost {self.what} ({reason})", reason=reason)
        if self.on_reconnect is not None:
            self.on_reconnect(reason)
        delay, self.delay = self.delay, min(self.delay * 2, MAX_DELAY)
        return delay


def headers(last_id: int | None) -> dict[str, str]:
    out = {"Accept": "text/event-stream"}
    if last_id is not None:
        out["Last-Event-ID"] = str(last_id)
    return out

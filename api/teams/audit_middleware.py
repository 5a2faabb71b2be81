"""Audit middleware: every mutation and every denied request lands in the audit log."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import anyio
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.teams import audit

log = logging.getLogger(__name__)
DENIED = frozenset({401, 403, 404, 409, 413, 429})
READS = frozenset({"GET", "HEAD", "OPTIONS"})


FLUSH_REPEATS = 100  # an aggregated row's count is written at least every this many
MAX_CLIENTS = 10_000  # client addresses whose current window is remembered


@dataclass
class _Window:
    started: float
    row_id: int
    pending: int = 0  # repeats counted here, not yet added to the row


class AnonymousDenials:
    """Anonymous 401s of one client address within ``window_seconds`` share one audit
    row, whose ``repeats`` counts them: a client guessing keys writes one row a window
    (and one UPDATE per FLUSH_REPEATS requests), not one row a request."""

    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds
        self._lock = threading.Lock()
        self._windows: OrderedDict[str | None, _Window] = OrderedDict()

    def record(self, session: Session, scope: Scope, code: int) -> None:
        client = scope.get("client")
        addr = client[0] if client else None
        now = time.monotonic()
        flush: list[tuple[int, int]] = []
        with self._lock:
            current = self._windows.get(addr)
            if current is not None and now - current.started < self.window:
                current.pending += 1
                if current.pending >= FLUSH_REPEATS:
                    flush.append((current.row_id, current.pending))
                    current.pending = 0
                start_new = False
            else:
                if current is not None and current.pending:
                    flush.append((current.row_id, current.pending))
                start_new = True
        for row_id, count in flush:
            audit.add_repeats(session, row_id, count)
        if not start_new:
            return
        row_id = audit.record_returning_id(
            session, action=scope["method"], resource=scope["path"], outcome=code, client=addr
        )
        with self._lock:
            self._windows[addr] = _Window(now, row_id)
            self._windows.move_to_end(addr)
            while len(self._windows) > MAX_CLIENTS:
                _, old = self._windows.popitem(last=False)
                if old.pending:
                    audit.add_repeats(session, old.row_id, old.pending)


class AuditMiddleware:
    def __init__(
        self, app: ASGIApp, factory: sessionmaker[Session], window_seconds: float = 60.0
    ) -> None:
        self.app, self.factory = app, factory
        self.anonymous = AnonymousDenials(window_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return
        status: dict[str, int] = {}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            code = status.get("code", 500)
            written = scope.get("state", {}).get(_WRITTEN) == code
            if (scope["method"] not in READS or code in DENIED) and not written:
                await anyio.to_thread.run_sync(self._write, scope, code)

    def _write(self, scope: Scope, code: int) -> None:
        try:
            with self.factory() as session:
                if code == 401 and scope.get("state", {}).get("principal") is None:
                    self.anonymous.record(session, scope, code)
                else:
                    _record(session, scope, code)
                session.commit()
        except Exception:
            log.exception("could not write the audit log")


_WRITTEN = "audit_written"  # request.state: the outcome whose row the route committed


def _record(session: Session, scope: Scope, code: int) -> None:
    state: dict[str, Any] = scope.get("state", {})
    principal = state.get("principal")
    client = scope.get("client")
    audit.record(
        session,
        key_id=getattr(principal, "key_id", None),
        team_id=getattr(principal, "team_id", None),
        action=scope["method"],
        resource=scope["path"],
        outcome=code,
        client=client[0] if client else None,
    )


def record_in(session: Session, request: Request, code: int) -> None:
    """A hot mutation (POST /v1/jobs) writes its audit row in its own transaction: one
    commit instead of two, and the row commits atomically with the change. Call
    ``committed`` once that transaction has committed; until then (or when the answer
    is another status) the middleware still writes the row itself."""
    _record(session, request.scope, code)


def committed(request: Request, code: int) -> None:
    request.state.audit_written = code

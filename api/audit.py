"""Audit middleware: every mutation and every denied request lands in the audit log."""

from __future__ import annotations

import logging
from typing import Any

import anyio
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.db import audit

log = logging.getLogger(__name__)
DENIED = frozenset({401, 403, 404, 409, 413, 429})
READS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuditMiddleware:
    def __init__(self, app: ASGIApp, factory: sessionmaker[Session]) -> None:
        self.app, self.factory = app, factory

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

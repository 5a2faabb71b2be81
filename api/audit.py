"""Audit middleware: every mutation and every denied request lands in the audit log."""

from __future__ import annotations

import logging
from typing import Any

import anyio
from sqlalchemy.orm import Session, sessionmaker
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
            if scope["method"] not in READS or code in DENIED:
                await anyio.to_thread.run_sync(self._write, scope, code)

    def _write(self, scope: Scope, code: int) -> None:
        state: dict[str, Any] = scope.get("state", {})
        principal = state.get("principal")
        client = scope.get("client")
        try:
            with self.factory() as session:
                audit.record(
                    session,
                    key_id=getattr(principal, "key_id", None),
                    team_id=getattr(principal, "team_id", None),
                    action=scope["method"],
                    resource=scope["path"],
                    outcome=code,
                    client=client[0] if client else None,
                )
                session.commit()
        except Exception:
            log.exception("could not write the audit log")

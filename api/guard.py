"""Request-body guard: hostile JSON is a clear 4xx before any handler runs.

Pure ASGI so it can count bytes as they stream in (413 without buffering an
unbounded body) and replay the checked body to the app. Multipart bodies pass
through: the upload routes enforce their own, larger, streaming limit.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import PROBLEM_JSON, Problem
from api.teams.repository import authenticate

MAX_DEPTH = 64
# The only routes that take a multipart body (they stream-count it themselves).
MULTIPART_PATHS = frozenset({"/v1/datasets"})
INT64 = 2**63
# Whether a raw API key is valid (the app's, over its database).
KeyCheck = Callable[[str], Awaitable[bool]]
UNAUTHORIZED_DETAIL = "Send `Authorization: Bearer <api key>` with a valid key."


class BodyRejected(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _reject_constant(name: str) -> Any:
    raise BodyRejected(400, "Malformed JSON", f"{name} is not valid JSON; send a number.")


def _bounded_int(text: str) -> int:
    value = int(text)
    if not -INT64 <= value < INT64:
        raise BodyRejected(422, "Number out of range", "Integers must fit in 64 bits.")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyRejected(
            422, "Number out of range", f"{text[:40]} overflows to infinity: send a finite number."
        )
    return value


# A JSON string literal (escapes included); its brackets are text, not structure.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _structural_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` outside string literals (one linear pass)."""
    depth = running = 0
    for ch in _STRING.sub("", text):
        if ch in "[{":
            running += 1
            depth = max(depth, running)
        elif ch in "]}":
            running -= 1
    return depth


def check_json(body: bytes) -> None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyRejected(400, "Malformed JSON", "The body is not UTF-8.") from exc
    if "\x00" in text or "\\u0000" in text:
        raise BodyRejected(400, "Malformed JSON", "NUL characters are not accepted.")
    # Cheap bracket count first, so a deeply nested body never reaches the recursive parser.
    depth = _structural_depth(text)
    if depth > MAX_DEPTH:
        raise BodyRejected(400, "Malformed JSON", f"Nesting deeper than {MAX_DEPTH} levels.")
    try:
        json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except json.JSONDecodeError as exc:
        raise BodyRejected(
            400, "Malformed JSON", f"{exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from exc
    except RecursionError as exc:
        raise BodyRejected(400, "Malformed JSON", "Nesting too deep.") from exc


class BodyGuard:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        multipart_paths: frozenset[str] = MULTIPART_PATHS,
        key_check: KeyCheck | None = None,
    ) -> None:
        """With ``key_check``, a refused body under /v1 from a request without a valid
        key is a 401 (who asks comes first); the body is still never read for it."""
        self.app, self.max_body_bytes = app, max_body_bytes
        self.multipart_paths = multipart_paths
        self.key_check = key_check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type.startswith("multipart/"):
                if scope.get("path") in self.multipart_paths:
                    # The upload route counts its own, larger, limit as the body streams.
                    await self.app(scope, receive, send)
                    return
                # Refused before a byte of the body is read, authenticated or not.
                raise BodyRejected(
                    415, "Unsupported media type", "This route takes JSON, not a multipart form."
                )
            if content_type not in ("", "application/json") and _declared(headers) > 0:
                raise BodyRejected(
                    415,
                    "Unsupported media type",
                    "Send JSON with `Content-Type: application/json`.",
                )
            body = await self._read(headers, receive)
            if body:
                if content_type != "application/json":
                    raise BodyRejected(
                        415,
                        "Unsupported media type",
                        "Send JSON with `Content-Type: application/json`.",
                    )
                check_json(body)
        except BodyRejected as rejected:
            path, answer = scope.get("path", ""), rejected
            check = self.key_check
            if check and path.startswith("/v1/") and not await authenticated(check, headers):
                # Who asks comes first: a stranger's bad body is a 401 (and in the audit log
                # as one), never a 400/413/415 that tells them how the route parses.
                answer = BodyRejected(401, "Unauthorized", UNAUTHORIZED_DETAIL)
            await _send_problem(send, answer, path)
            return
        await self.app(scope, _replay(body), send)

    async def _read(self, headers: dict[str, str], receive: Receive) -> bytes:
        # A declared length over the limit is refused before reading (413).
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BodyRejected(
                413, "Request body too large", f"The limit is {self.max_body_bytes} bytes."
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyRejected(
                    413, "Request body too large", f"The limit is {self.max_body_bytes} bytes."
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def key_checker(factory: Callable[[], Session]) -> KeyCheck:
    """Whether a raw API key is valid (in a thread: one indexed SELECT)."""

    def check(token: str) -> bool:
        with factory() as session:  # read only: last_used_at is not worth a write here
            return authenticate(session, token) is not None

    async def valid(token: str) -> bool:
        try:
            return await anyio.to_thread.run_sync(check, token)
        except SQLAlchemyError:  # the database is away: leave the answer to the route
            return True

    return valid


async def authenticated(check: KeyCheck, headers: dict[str, str]) -> bool:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return await check(token.strip())


def _declared(headers: dict[str, str]) -> int:
    value = headers.get("content-length", "")
    return int(value) if value.isdigit() else 0


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _send_problem(send: Send, exc: BodyRejected, path: str) -> None:
    payload = Problem(title=exc.title, status=exc.status, detail=exc.detail, instance=path)
    body = payload.model_dump_json(exclude_none=True).encode()
    await send(
        {
            "type": "http.response.start",
            "status": exc.status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *([(b"www-authenticate", b"Bearer")] if exc.status == 401 else []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

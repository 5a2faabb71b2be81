"""A client that leaves an event stream is not an error (issue 28, finding 2).

FastAPI's SSE support feeds the response through a one-item memory stream and a
``_keepalive_inserter`` task. When the client goes while the producer is ahead, the
response stops reading; the inserter blocks sending into the buffer; the request's
exit stack closes the buffer's receiving end before it cancels the inserter, which
wakes with ``anyio.BrokenResourceError``, and the task group raises it (or the
server's ``OSError`` for the vanished socket) out of the app: uvicorn logs
"Exception in ASGI application" for a stream that simply ended.

This middleware, around ``GET .../events`` only, notes when the client is gone (the
server's ``send`` failed, or ``receive`` said ``http.disconnect``) and then drops
exceptions made only of those "nobody is listening" errors. Anything else still
propagates; so does any error while the client is still there.
"""

from __future__ import annotations

import logging

import anyio
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

GONE_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, ClientDisconnect)


def only_gone_errors(exc: BaseException) -> bool:
    """Whether ``exc`` (or every leaf of an exception group) says the client is gone."""
    if isinstance(exc, BaseExceptionGroup):
        return all(only_gone_errors(e) for e in exc.exceptions)
    return isinstance(exc, GONE_ERRORS)


class StreamGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "GET" or not path.endswith("/events"):
            await self.app(scope, receive, send)
            return
        gone = False

        async def watching_receive() -> Message:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect":
                gone = True
            return message

        async def watching_send(message: Message) -> None:
            nonlocal gone
            try:
                await send(message)
            except OSError:
                gone = True
                raise

        try:
            await self.app(scope, watching_receive, watching_send)
        except BaseException as exc:
            if not (gone and only_gone_errors(exc)):
                raise
            log.debug("event stream %s: the client left (%s)", path, type(exc).__name__)

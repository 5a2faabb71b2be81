"""Headers every answer carries (issue 28, finding 10). Pure ASGI: no buffering, streams too.

- ``X-Content-Type-Options: nosniff`` on every answer: a browser never guesses a type.
- ``Cache-Control: no-store`` on the answers that carry a secret (a new API key, a new
  webhook's signing secret), whatever their status: no cache or proxy keeps them.
- The dashboard's Content-Security-Policy (``frame-ancestors 'none'``: no page can frame
  it) and ``X-Frame-Options: DENY`` on everything under ``/ui``, static files and their
  404s included; ``/docs`` (Swagger UI starts from an inline script) gets a policy that
  only forbids framing, plugins and a changed base URL.

A header a route set itself is kept.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.ui import CSP

# (method, path) of the answers that carry a secret.
SECRET_ANSWERS = frozenset({("POST", "/v1/admin/keys"), ("POST", "/v1/webhooks")})
DOCS_CSP = "frame-ancestors 'none'; object-src 'none'; base-uri 'none'"


def headers_for(method: str, path: str) -> list[tuple[bytes, bytes]]:
    """The headers an answer to ``method path`` gets (unless it set them itself)."""
    out = [(b"x-content-type-options", b"nosniff")]
    if (method, path.rstrip("/")) in SECRET_ANSWERS:
        out.append((b"cache-control", b"no-store"))
    policy = CSP if path in ("/", "/ui") or path.startswith("/ui/") else None
    if path == "/docs" or path.startswith("/docs/"):
        policy = DOCS_CSP
    if policy is not None:
        out += [(b"content-security-policy", policy.encode()), (b"x-frame-options", b"DENY")]
    return out


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = headers_for(scope["method"], scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                added = [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

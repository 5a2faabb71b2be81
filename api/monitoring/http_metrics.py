"""Request counts and latency per route *template* (``/v1/jobs/{job_id}``), never raw paths.

A pure ASGI middleware: no thread, no body buffering, so server-sent event
streams and downloads pass through untouched (their histogram observation is
the stream's whole life). With ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus-client
keeps these in files shared by every API process and ``/metrics`` sums them.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "trainforge_http_requests",
    "HTTP requests by route template, method and status code.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "trainforge_http_request_duration_seconds",
    "Time from the request's arrival to its response's last byte, per route template.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0),
)

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED = "unmatched"  # no route (a 404): one label, so scanners cannot blow up the series


def route_template(scope: Scope) -> str:
    """The matched route's path template; for a request answered before routing (refused
    by a middleware), the route it would have reached."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path or "/"
    app: Any = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            return str(getattr(candidate, "path", UNMATCHED)) or "/"
    return UNMATCHED


class HttpMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception before the response started: the server answers 500

        async def send_and_see(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_see)
        finally:
            method = scope.get("method", "")
            method = method if method in _METHODS else "other"
            route = route_template(scope)
            REQUESTS.labels(route, method, str(status)).inc()
            LATENCY.labels(route, method).observe(time.perf_counter() - start)

"""Query parameters the document says are integers are refused unless written as one.

FastAPI reads an integer query parameter leniently (pydantic strips whitespace and
control characters, takes ``1_0``): ``limit=%0C9`` was a page of 9 although the
document says ``integer`` (issue 28, finding 4). The rules come from the app's own
OpenAPI document, so the server refuses exactly what its document forbids; the
answer is the usual 422 problem listing each parameter at ``query.<name>``. As for
bodies, who asks comes first: without a valid key under /v1 it is a 401.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import anyio
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from api.guard import UNAUTHORIZED_DETAIL, KeyCheck, authenticated
from api.problems import FieldProblem, problem_response

INTEGER = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class _Route:
    pattern: re.Pattern[str]
    method: str
    integers: frozenset[str]  # query parameters of type integer


def _is_integer(schema: dict[str, Any]) -> bool:
    kinds = [schema, *schema.get("anyOf", [])]
    types = {k.get("type") for k in kinds} - {"null", None}
    return types == {"integer"}


def routes_of(document: dict[str, Any]) -> list[_Route]:
    out = []
    for template, operations in document.get("paths", {}).items():
        pattern = re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)))
        for method, op in operations.items():
            if not isinstance(op, dict):
                continue
            integers = frozenset(
                p["name"]
                for p in op.get("parameters", [])
                if p.get("in") == "query" and _is_integer(p.get("schema", {}))
            )
            if integers:
                out.append(_Route(pattern, method.upper(), integers))
    return out


def problems(routes: list[_Route], method: str, path: str, query: str) -> list[FieldProblem]:
    route = next((r for r in routes if r.method == method and r.pattern.fullmatch(path)), None)
    if route is None:
        return []
    return [
        FieldProblem(
            loc=f"query.{name}",
            msg=f"Input should be an integer written in digits, not {value!r}",
            type="int_parsing",
        )
        for name, value in parse_qsl(query, keep_blank_values=True)
        if name in route.integers and not INTEGER.fullmatch(value)
    ]


def _query_params(dependant: Any) -> tuple[tuple[str, str], ...]:
    """(name, annotation) of each query parameter of an operation and its dependencies."""
    own = tuple((p.alias, repr(p.field_info.annotation)) for p in dependant.query_params)
    return own + tuple(q for d in dependant.dependencies for q in _query_params(d))


def _fingerprint(app: Any) -> Hashable:
    """What the document's integer query parameters follow from: each operation's path,
    methods, endpoint and query parameters."""
    return tuple(
        (r.path, frozenset(r.methods or ()), r.endpoint, _query_params(r.dependant))
        for r in app.routes
        if isinstance(r, APIRoute) and r.include_in_schema
    )


# The rules per fingerprint, for the process: a second app with the same operations (the
# test suite builds one per test) reuses them instead of building the whole document
# (~1 s of CPU) on its first request with a query string.
_RULES: dict[Hashable, list[_Route]] = {}
_RULES_LOCK = threading.Lock()


def rules_for(app: Any) -> list[_Route]:
    key = _fingerprint(app)
    with _RULES_LOCK:
        known = _RULES.get(key)
    if known is None:
        known = routes_of(app.openapi())
        with _RULES_LOCK:
            _RULES[key] = known
    return known


class QueryGuard:
    def __init__(self, app: ASGIApp, key_check: KeyCheck | None = None) -> None:
        self.app, self.key_check = app, key_check
        self._routes: list[_Route] | None = None
        self._building = anyio.Lock()

    async def _build(self, app: Any) -> list[_Route]:
        # The document is complete once the app serves requests. Building it takes ~0.5 s:
        # in a thread, once, so the event loop (its streams, /healthz) never waits on it
        # (issue 28, 13: the first poll with a query string stalled every answer).
        async with self._building:
            if self._routes is None:
                self._routes = await anyio.to_thread.run_sync(rules_for, app)
        return self._routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if not query:
            await self.app(scope, receive, send)
            return
        routes = self._routes or await self._build(scope["app"])
        path = scope.get("path", "")
        found = problems(routes, scope["method"], path, query.decode("latin-1"))
        if not found:
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        check = self.key_check
        if check and path.startswith("/v1/") and not await authenticated(check, headers):
            response = problem_response(
                401, "Unauthorized", UNAUTHORIZED_DETAIL, instance=path,
                headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        else:
            detail = "; ".join(f"{p.loc}: {p.msg}" for p in found)
            response = problem_response(422, "Invalid request", detail, errors=found, instance=path)
        await response(scope, receive, send)

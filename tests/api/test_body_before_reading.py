"""Bodies refused before they are read (issue 18, item 3): by route (415 for a
multipart form where JSON is expected) and by declared size (413), authenticated
or not. The guard is driven with a `receive` that counts what the app pulled."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from api.guard import BodyGuard

pytestmark = pytest.mark.anyio
HUGE = str(300 * 2**20)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def inner(scope: Scope, receive: Receive, send: Send) -> None:
    for _ in range(100):  # an app that buffers (up to a point, so a failure is not a hang)
        if not (await receive()).get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def post(path: str, content_type: str, length: str) -> tuple[int, dict[str, Any], int]:
    pulled = 0

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1  # an endless body: 64 KiB at a time
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(b"content-type", content_type.encode()), (b"content-length", length.encode())]
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    await BodyGuard(inner, max_body_bytes=1_000_000)(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), pulled


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/specs/validate", "/v1/admin/keys"])
async def test_a_multipart_body_where_json_is_expected_is_415_unread(path: str) -> None:
    status, problem, pulled = await post(path, "multipart/form-data; boundary=x", HUGE)
    assert (status, pulled) == (415, 0)
    assert "multipart" in problem["detail"]


async def test_a_declared_oversized_json_body_is_413_unread() -> None:
    status, problem, pulled = await post("/v1/jobs", "application/json", HUGE)
    assert (status, pulled) == (413, 0)
    assert "1000000" in problem["detail"]


async def test_another_media_type_with_a_body_is_415_unread() -> None:
    status, _, pulled = await post("/v1/jobs", "application/octet-stream", HUGE)
    assert (status, pulled) == (415, 0)


async def test_the_upload_route_still_receives_its_multipart_body() -> None:
    pulled = 0

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"--x--", "more_body": False}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(b"content-type", b"multipart/form-data; boundary=x")]
    scope = {"type": "http", "method": "POST", "path": "/v1/datasets", "headers": headers}
    await BodyGuard(inner, max_body_bytes=1_000_000)(scope, receive, send)
    assert sent[0]["status"] == 200 and pulled == 1

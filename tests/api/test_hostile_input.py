"""Hostile bodies get a clear 4xx problem, never a 500, and store nothing."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import FakeQueue

DIGITS = '{"spec": {"dataset": {"source": {"kind": "builtin", "name": "digits"}}}}'
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ('{"spec": {"dataset": {"source": {"kind": "builtin", "name": "digits"}}}, "x": NaN}', 400),
        (
            '{"spec": {"dataset": {"source": {"kind": "builtin", "name": "digits"}}, '
            '"epochs": Infinity}}',
            400,
        ),
        (
            '{"spec": {"dataset": {"source": {"kind": "builtin", "name": "digits"}}, '
            '"seed": 123456789012345678901234567890}}',
            422,
        ),
        (
            '{"name": "a\\u0000b", "spec": {"dataset": {"source": {"kind": "builtin", '
            '"name": "digits"}}}}',
            400,
        ),
        ("[" * 10000 + "]" * 10000, 400),
        ('{"spec": ', 400),
        (b"\xff\xfe", 400),
        (
            '{"spec": {"dataset": {"source": {"kind": "builtin", "name": "digits"}}, '
            '"epochs": 1e400}}',
            422,
        ),
        ('"just a string"', 422),
    ],
)
def test_hostile_json_is_rejected(
    client: TestClient, fake_queue: FakeQueue, body: str | bytes, status: int
) -> None:
    content = body if isinstance(body, bytes) else body.encode()
    r = client.post("/v1/jobs", content=content, headers=JSON)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert fake_queue.published == []
    assert client.get("/v1/jobs").json()["items"] == []


def test_oversized_body_is_413(client: TestClient) -> None:
    big = DIGITS[:-1] + ', "name": "' + "x" * 2_000_000 + '"}'
    r = client.post("/v1/jobs", content=big, headers=JSON)
    assert r.status_code == 413
    assert "limit" in r.json()["detail"]


def test_wrong_content_type_is_415(client: TestClient) -> None:
    r = client.post("/v1/jobs", content=DIGITS, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = client.post(
        "/v1/jobs", content=DIGITS, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 415


def test_a_well_formed_body_still_passes(client: TestClient) -> None:
    r = client.post("/v1/jobs", content=DIGITS, headers=JSON)
    assert r.status_code == 201

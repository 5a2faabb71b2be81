"""Numbers that do not fit are a 4xx naming the field, and nothing is stored (issue 18, 6).

Integers past 64 bits in paths, queries and headers; floats that overflow to
infinity (``1e999``); finite values past what the engine can use; naive
datetimes; booleans where an integer is expected; brackets inside strings.
"""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

from tests.conftest import FakeQueue

JSON = {"Content-Type": "application/json"}
DIGITS = {"source": {"kind": "builtin", "name": "digits"}}
HUGE = str(2**64)


def _job(client: TestClient) -> str:
    r = client.post("/v1/jobs", json={"spec": {"dataset": DIGITS, "epochs": 1}})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _jobs(client: TestClient) -> int:
    return len(client.get("/v1/jobs", params={"limit": 100}).json()["items"])


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/{job}/metrics?since_step=" + HUGE,
        "/v1/jobs/{job}/checkpoints/" + HUGE + "/download",
        "/v1/jobs/{job}/checkpoints?cursor=" + "9" * 19,
        "/v1/jobs/{job}/events?after=" + HUGE,
        "/v1/admin/audit?cursor=" + HUGE,
    ],
)
def test_integers_past_64_bits_in_the_url_are_422(client: TestClient, path: str) -> None:
    r = client.get(path.format(job=_job(client)))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


def test_last_event_id_past_64_bits_is_422(client: TestClient) -> None:
    r = client.get(f"/v1/jobs/{_job(client)}/events", headers={"Last-Event-ID": HUGE})
    assert r.status_code == 422, r.text


def test_a_naive_datetime_in_a_cursor_is_422(client: TestClient) -> None:
    cursor = base64.urlsafe_b64encode(b"2026-01-01T00:00:00|abc").decode().rstrip("=")
    r = client.get("/v1/jobs", params={"cursor": cursor})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == "query.cursor"
    assert client.get("/v1/datasets", params={"cursor": cursor}).status_code == 422


def test_a_cursor_past_the_calendar_is_422(client: TestClient) -> None:
    cursor = base64.urlsafe_b64encode(b"9999-12-31T23:00:00-14:00|abc").decode().rstrip("=")
    assert client.get("/v1/jobs", params={"cursor": cursor}).status_code == 422


def test_a_naive_expires_at_is_422(client: TestClient) -> None:
    client.post("/v1/admin/teams", json={"name": "naive"})
    r = client.post("/v1/admin/keys", json={"team": "naive", "expires_at": "2030-01-01T00:00:00"})
    assert r.status_code == 422, r.text
    assert "expires_at" in r.text
    assert all(k["team_id"] != "naive" for k in client.get("/v1/admin/keys").json()["items"])


OVERFLOWING = [
    ({"init": {"kind": "random_uniform", "scale": "X"}}, "init"),
    ({"early_stopping": {"monitor": "val_loss", "baseline": "X"}}, "baseline"),
    ({"augmentation": {"fill_mode": "constant", "cval": "X"}}, "cval"),
    ({"augmentation": {"zoom_range": "X"}}, "zoom_range"),
    ({"augmentation": {"zoom_range": [0.5, "X"]}}, "zoom_range"),
    ({"init": {"kind": "orthogonal", "gain": "X"}}, "init"),
]


@pytest.mark.parametrize(("part", "field"), OVERFLOWING)
def test_floats_that_overflow_to_infinity_are_422(
    client: TestClient, fake_queue: FakeQueue, part: dict[str, object], field: str
) -> None:
    body = json.dumps({"spec": {"dataset": DIGITS, **part}}).replace('"X"', "1e999")
    r = client.post("/v1/jobs", content=body.encode(), headers=JSON)
    assert r.status_code == 422, r.text
    assert "infinity" in r.json()["detail"]
    assert _jobs(client) == 0 and fake_queue.published == []


@pytest.mark.parametrize(
    ("part", "loc"),
    [
        ({"optimizer": {"kind": "adam", "eps": 3e307}}, "spec.optimizer.eps"),
        ({"optimizer": {"kind": "rmsprop", "eps": 2.0}}, "spec.optimizer.eps"),
        ({"optimizer": {"kind": "sgd", "lr": 1e30}}, "spec.optimizer.lr"),
        ({"clipping": {"kind": "global_norm", "max_norm": 1.5e308}}, "spec.clipping"),
        ({"init": {"kind": "random_uniform", "scale": 1e300}}, "spec.init.scale"),
        ({"init": {"kind": "orthogonal", "gain": 1e300}}, "spec.init.gain"),
        ({"early_stopping": {"baseline": 1e300}}, "spec.early_stopping.baseline"),
        ({"augmentation": {"cval": -1e300}}, "spec.augmentation.cval"),
        ({"augmentation": {"zoom_range": [0.5, 1e300]}}, "spec.augmentation.zoom_range"),
        ({"schedule": {"kind": "one_cycle", "div_factor": 1e300}}, "spec.schedule"),
        ({"regularization": {"l2": 1e300}}, "spec.regularization.l2"),
        ({"schedule": {"kind": "reduce_on_plateau", "patience": 2**62}}, "spec.schedule"),
    ],
)
def test_finite_numbers_past_what_the_engine_uses_are_422(
    client: TestClient, fake_queue: FakeQueue, part: dict[str, object], loc: str
) -> None:
    _refused_at(client, fake_queue, part, loc)


def _refused_at(
    client: TestClient, fake_queue: FakeQueue, part: dict[str, object], loc: str
) -> None:
    """A spec with ``part`` is a 422 with a problem at ``loc``; nothing stored or queued."""
    r = client.post("/v1/jobs", json={"spec": {"dataset": DIGITS, **part}})
    assert r.status_code == 422, r.text
    assert any(e["loc"].startswith(loc) for e in r.json()["errors"]), r.json()["errors"]
    assert _jobs(client) == 0 and fake_queue.published == []


def test_a_boolean_is_not_an_integer(client: TestClient, fake_queue: FakeQueue) -> None:
    r = client.post("/v1/jobs", json={"spec": {"dataset": DIGITS}, "priority": False})
    assert r.status_code == 422, r.text
    assert any(e["loc"].endswith("priority") for e in r.json()["errors"]), r.text
    assert (
        client.post("/v1/admin/teams", json={"name": "b", "max_running_jobs": True}).status_code
        == 422
    )
    team = client.post("/v1/admin/teams", json={"name": "c"}).json()
    patched = client.patch(f"/v1/admin/teams/{team['id']}", json={"max_queued_jobs": True})
    assert patched.status_code == 422
    assert all(t["name"] != "b" for t in client.get("/v1/admin/teams").json()["items"])
    assert _jobs(client) == 0


@pytest.mark.parametrize(
    ("part", "loc"),
    [
        ({"epochs": True}, "spec.epochs"),
        ({"dataset": {**DIGITS, "batch_size": False}}, "spec.dataset.batch_size"),
        ({"model": {"kind": "mlp", "hidden_units": [32, True]}}, "spec.model"),
        ({"optimizer": {"kind": "sgd", "lr": True}}, "spec.optimizer"),
        ({"augmentation": {"zoom_range": [True, 1.5]}}, "spec.augmentation.zoom_range"),
        ({"augmentation": {"zoom_range": True}}, "spec.augmentation.zoom_range"),
    ],
)
def test_a_boolean_is_not_a_spec_number(
    client: TestClient, fake_queue: FakeQueue, part: dict[str, object], loc: str
) -> None:
    # Lax parsing would read true as 1: `epochs: true` would quietly train one epoch.
    _refused_at(client, fake_queue, part, loc)
    # Numbers are still numbers: 1 for a float, and "1e-3" as PyYAML (YAML 1.1) reads
    # `lr: 1e-3` from a spec file; booleans where booleans belong.
    for lr in (1, "1e-3"):
        ok = {"dataset": DIGITS, "epochs": 2, "optimizer": {"kind": "sgd", "lr": lr}}
        ok |= {"deterministic": True}
        r = client.post("/v1/specs/validate", json={"spec": ok})
        assert r.status_code == 200, r.text


def test_brackets_inside_strings_are_not_nesting(client: TestClient) -> None:
    r = client.post("/v1/jobs", json={"spec": {"dataset": DIGITS, "epochs": 1}, "name": "[{" * 100})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "[{" * 100


def test_an_expires_at_past_the_calendar_in_utc_is_422(client: TestClient) -> None:
    client.post("/v1/admin/teams", json={"name": "far"})
    far = "9999-12-31T23:00:00-14:00"  # valid here, past year 9999 in UTC
    r = client.post("/v1/admin/keys", json={"team": "far", "expires_at": far})
    assert r.status_code == 422, r.text

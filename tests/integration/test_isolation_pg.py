"""Every /v1 route, taken from the app's route table, refuses strangers (on PostgreSQL):
no key, a garbage key, a revoked key → 401; another team's key → 404 on team-owned
resources, indistinguishable from a missing one. Denials land in the audit log."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.db.migrate import upgrade
from api.db.session import session_factory
from api.settings import Settings
from api.teams.audit import AuditEntry
from api.teams.repository import create_api_key, get_or_create_team, revoke_key
from tests.conftest import FakeQueue

pytestmark = pytest.mark.integration
TEAM_OWNED = {"job_id", "dataset_id", "checkpoint_id"}


@dataclass
class World:
    client: TestClient
    settings: Settings
    keys: dict[str, str]
    job_id: str


@pytest.fixture
def world(pg_url: str, tmp_path: Path) -> Iterator[World]:
    upgrade(pg_url)
    settings = Settings(home=tmp_path, database_url=pg_url, broker_url="memory://")
    tag = secrets.token_hex(3)
    keys: dict[str, str] = {}
    with session_factory(pg_url)() as s:
        team_a = get_or_create_team(s, f"a-{tag}")
        team_b = get_or_create_team(s, f"b-{tag}")
        _, keys["a"] = create_api_key(s, team_a, "member")
        _, keys["b"] = create_api_key(s, team_b, "member")
        row, keys["revoked"] = create_api_key(s, team_a, "admin")
        create_api_key(s, team_a, "admin")  # the last admin key cannot be revoked
        revoke_key(s, row.id)
        s.commit()
    app = create_app(settings, queue=FakeQueue(settings))
    with TestClient(app) as client:
        spec = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}}
        r = client.post(
            "/v1/jobs", json={"spec": spec}, headers={"Authorization": f"Bearer {keys['a']}"}
        )
        assert r.status_code == 201
        yield World(client, settings, keys, r.json()["id"])


def v1_routes(world: World) -> list[tuple[str, str, set[str]]]:
    # The app's own route table, as its OpenAPI document lists it: a new route
    # cannot skip this test (and every route is in the document; see tests/contract).
    paths = world.client.app.openapi()["paths"]  # type: ignore[attr-defined]
    out = []
    for path, operations in paths.items():
        if path.startswith("/v1"):
            params = set(re.findall(r"{(\w+)}", path))
            out += [(method.upper(), path, params) for method in operations]
    assert len(out) >= 6
    return out


def fill(path: str, world: World) -> str:
    return (
        path.replace("{job_id}", world.job_id)
        .replace("{checkpoint_id}", "1")
        .replace("{dataset_id}", "ds-missing")
        .replace("{team_id}", "t-missing")
        .replace("{key_id}", "k-missing")
    )


def test_every_route_refuses_strangers(world: World) -> None:
    bad_headers = {
        "no key": {},
        "garbage key": {"Authorization": "Bearer tf_zzzz_garbage"},
        "revoked key": {"Authorization": f"Bearer {world.keys['revoked']}"},
    }
    for method, path, _ in v1_routes(world):
        url = fill(path, world)
        for label, headers in bad_headers.items():
            r = world.client.request(method, url, headers=headers)
            assert r.status_code == 401, (label, method, path, r.status_code)
            assert r.headers["content-type"].startswith("application/problem+json")


def test_another_teams_resources_are_404(world: World) -> None:
    other = {"Authorization": f"Bearer {world.keys['b']}"}
    owner = {"Authorization": f"Bearer {world.keys['a']}"}
    checked = 0
    for method, path, params in v1_routes(world):
        if "job_id" not in params:
            continue
        url = fill(path, world)
        r = world.client.request(method, url, headers=other)
        missing = world.client.request(method, url.replace(world.job_id, "0" * 32), headers=other)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert r.json()["title"] == missing.json()["title"]
        checked += 1
    assert checked >= 3
    listing = world.client.get("/v1/jobs", headers=other).json()
    assert listing["items"] == []
    assert [j["id"] for j in world.client.get("/v1/jobs", headers=owner).json()["items"]] == [
        world.job_id
    ]
    # A member cannot reach another team's listing through the admin filter.
    assert (
        world.client.get("/v1/jobs", params={"team_id": "x"}, headers=other).json()["items"] == []
    )


def test_admin_routes_need_an_admin(world: World) -> None:
    member = {"Authorization": f"Bearer {world.keys['a']}"}
    for method, path, _ in v1_routes(world):
        if path.startswith("/v1/admin"):
            r = world.client.request(method, fill(path, world), headers=member)
            assert r.status_code == 403, (method, path, r.status_code)


def test_denials_are_audited_without_secrets(world: World) -> None:
    world.client.get("/v1/jobs", headers={"Authorization": "Bearer tf_abc_secretvalue"})
    world.client.get(
        f"/v1/jobs/{world.job_id}", headers={"Authorization": f"Bearer {world.keys['b']}"}
    )
    with session_factory(world.settings.resolved_database_url)() as s:
        rows = list(s.scalars(select(AuditEntry)))
    outcomes = {(r.action, r.resource, r.outcome) for r in rows}
    assert ("GET", "/v1/jobs", 401) in outcomes
    assert ("GET", f"/v1/jobs/{world.job_id}", 404) in outcomes
    assert ("POST", "/v1/jobs", 201) in outcomes
    for row in rows:
        text = " ".join(str(v) for v in vars(row).values())
        assert "secretvalue" not in text
        for key in world.keys.values():
            assert key.split("_", 2)[2] not in text

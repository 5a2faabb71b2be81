"""The request's session is made and closed on the event loop (api/deps.py, issue 16):
whatever a request did -- commit, read and leave its transaction open, fail -- its
connection goes back to the pool, and a key's `last_used_at` is still committed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from api.db.models import utcnow
from api.db.session import session_factory
from api.settings import Settings
from api.teams.models import ApiKey
from api.teams.repository import LAST_USED_RESOLUTION

IRIS = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 1}


def _engine(client: TestClient) -> Engine:
    engine: Engine = client.app.state.session_factory.kw["bind"]  # type: ignore[attr-defined]
    return engine


def test_every_kind_of_request_gives_its_connection_back(client: TestClient) -> None:
    r = client.post("/v1/jobs", json={"spec": IRIS})  # commits
    assert r.status_code == 201, r.text
    job = r.headers["location"]
    for _ in range(30):  # more requests than the pool holds connections
        assert client.get(job).status_code == 200  # a read: its transaction is left open
        assert client.get("/v1/jobs/nope").status_code == 404  # refused after a query
        bad = client.post("/v1/jobs", json={"spec": {**IRIS, "epochs": 0}})
        assert bad.status_code == 422  # refused by the semantic checks, after the key check
        assert client.get("/v1/jobs", headers={"Authorization": "Bearer tf_x_y"}).status_code == 401
        assert client.post(f"{job}/cancel").status_code in (200, 409)
    assert _engine(client).pool.checkedout() == 0  # type: ignore[attr-defined]


def test_last_used_at_is_committed_once_a_minute_by_any_request(
    client: TestClient, settings: Settings
) -> None:
    def last_used() -> dict[str, object]:
        keys = client.get("/v1/admin/keys").json()["items"]
        return {k["id"]: k["last_used_at"] for k in keys}

    first = last_used()  # this request wrote it: a read that commits nothing else
    assert all(first.values()), first
    assert last_used() == first  # within the minute: not written again
    factory = session_factory(settings.resolved_database_url)
    with factory() as session:  # the minute has passed
        earlier = utcnow() - LAST_USED_RESOLUTION - timedelta(seconds=1)
        session.execute(update(ApiKey).values(last_used_at=earlier))
        session.commit()
    client.get("/healthz")
    after = last_used()
    assert all(after[k] != first[k] for k in first), (first, after)


def test_a_database_gone_by_the_close_costs_the_connection_not_the_answer(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fault suite's PostgreSQL restart: a read had its answer, then the server went
    away before its transaction ended, and the ROLLBACK failed."""
    job = client.post("/v1/jobs", json={"spec": IRIS}).headers["location"]
    real_close = Session.close
    failed: list[Session] = []

    def close(self: Session) -> None:
        if self.in_transaction() and not failed:
            failed.append(self)
            raise OperationalError("ROLLBACK", {}, Exception("server closed the connection"))
        real_close(self)

    monkeypatch.setattr(Session, "close", close)
    r = client.get(job)  # the TestClient raises whatever escapes the app
    assert r.status_code == 200 and r.json()["status"] == "queued"
    assert failed and not failed[0].in_transaction()  # invalidated: nothing is left open
    assert client.get(job).status_code == 200
    assert _engine(client).pool.checkedout() == 0  # type: ignore[attr-defined]

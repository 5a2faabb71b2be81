"""The job list's pages are reused while nothing they show changed, and never after
(issue 28, finding 13: 200 dashboards polling one API process)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.db.session import session_factory
from api.ledger import repository as repo
from api.ledger.models import Job
from api.ledger.progress import record_progress
from api.settings import Settings
from tests.api.test_job_etag import _statements

SPEC = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 5}


def _statuses(client: TestClient, **params: Any) -> dict[str, tuple[str, int]]:
    items = client.get("/v1/jobs", params=params).json()["items"]
    return {j["id"]: (j["status"], j["progress"]["step"]) for j in items}


def test_an_unchanged_page_is_answered_without_building_it(client: TestClient) -> None:
    client.post("/v1/jobs", json={"spec": SPEC})
    first = client.get("/v1/jobs")
    with _statements() as statements:
        again = client.get("/v1/jobs")
    seen = [q for q in statements if q.lstrip().upper().startswith("SELECT")]
    assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
    # The key, then the newest event id: not the page's jobs nor their best metrics.
    assert len(seen) == 2, seen
    assert "jobs" not in seen[-1].split("FROM", 1)[1], seen[-1]
    assert client.app.state.list_cache.hits >= 1  # type: ignore[attr-defined]


def test_what_a_worker_writes_shows_on_the_next_poll(
    client: TestClient, settings: Settings
) -> None:
    job_id = client.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    assert _statuses(client)[job_id] == ("queued", 0)
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:  # another process: a worker claims it and reports progress
        attempt = repo.claim_job(s, job_id, 60.0)
        s.commit()
    assert attempt is not None
    assert _statuses(client)[job_id] == ("running", 0)
    with factory() as s:
        record_progress(s, job_id, attempt, epoch=0, epochs=5, step=7, batch=7,
                        steps_per_epoch=10, loss=0.5)  # fmt: skip
        s.commit()
    assert _statuses(client)[job_id] == ("running", 7)


def test_a_write_through_the_api_shows_at_once(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    assert job_id in _statuses(client)
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    assert _statuses(client)[job_id] == ("canceled", 0)
    # Deleting takes the job's events with it (the newest event id need not move): the
    # write itself forgets the pages.
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert job_id not in _statuses(client)


def test_a_change_no_event_marks_shows_within_the_bound(
    client: TestClient, settings: Settings
) -> None:
    job_id = client.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    assert _statuses(client)[job_id] == ("queued", 0)
    with session_factory(settings.resolved_database_url)() as s:  # no event: not our writers
        s.execute(update(Job).where(Job.id == job_id).values(progress_step=3))
        s.commit()
    assert _statuses(client)[job_id] == ("queued", 0)  # the page of the same version
    client.app.state.list_cache.max_age = 0.0  # type: ignore[attr-defined]
    assert _statuses(client)[job_id] == ("queued", 3)


def test_pages_are_kept_per_team_and_filter(client: TestClient) -> None:
    a = client.post("/v1/jobs", json={"spec": SPEC, "name": "alpha"}).json()["id"]
    b = client.post("/v1/jobs", json={"spec": SPEC, "name": "beta"}).json()["id"]
    assert set(_statuses(client, name="alpha")) == {a}
    assert set(_statuses(client, name="beta")) == {b}
    assert set(_statuses(client, limit=1)) == {b}
    assert set(_statuses(client, limit=2)) == {a, b}


def test_the_first_query_string_does_not_build_the_document_on_the_event_loop(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The query guard checks query strings against the OpenAPI document, ~0.5 s to build:
    # built on the event loop, the first dashboard poll stalled every stream and /healthz.
    import asyncio

    from api import query_guard
    from api.app import create_app

    monkeypatch.setattr(query_guard, "_RULES", {})  # as in a fresh process: none read yet

    app = create_app(settings)
    built_on_loop: list[bool] = []
    openapi = app.openapi

    def recording() -> Any:
        built_on_loop.append(asyncio._get_running_loop() is not None)
        return openapi()

    app.openapi = recording  # type: ignore[method-assign]
    with TestClient(app) as client:  # (no warm-up build at start: the settings fixture's)
        answer = client.get("/v1/jobs", params={"limit": "abc"}, headers=_admin(settings))
    assert answer.status_code == 422
    assert built_on_loop and not any(built_on_loop), built_on_loop


def _admin(settings: Settings) -> dict[str, str]:
    from api.teams.repository import create_api_key, get_or_create_team

    with session_factory(settings.resolved_database_url)() as s:
        _, key = create_api_key(s, get_or_create_team(s, "default"), "admin")
        s.commit()
    return {"Authorization": f"Bearer {key}"}


def test_the_warm_up_builds_the_document_once_per_process(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first app of a process builds its document at start-up (in a thread); a second
    app with the same operations reuses the query rules and builds its document only when
    asked for it, yet refuses the same queries."""
    import threading

    from api import query_guard
    from api.app import create_app

    monkeypatch.setattr(query_guard, "_RULES", {})
    warm = settings.model_copy(update={"api_openapi_warm_up": True})
    apps = [create_app(warm), create_app(warm)]
    for app in apps:
        with TestClient(app) as client:
            for thread in threading.enumerate():
                if thread.name == "openapi-warm-up":
                    thread.join(timeout=60)
            built = app.openapi_schema is not None
            answer = client.get("/v1/jobs", params={"limit": "abc"}, headers=_admin(settings))
        assert answer.status_code == 422, answer.text
        assert built == (app is apps[0])

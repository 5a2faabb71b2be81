"""ETag / If-None-Match on the reads a dashboard polls, and the job read's queries
(issue 28, finding 13)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from api.db.session import session_factory
from api.ledger import repository as repo
from api.settings import Settings
from api.teams.repository import create_api_key, get_or_create_team

SPEC = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 2}


def _member(settings: Settings, team: str) -> dict[str, str]:
    with session_factory(settings.resolved_database_url)() as s:
        _, key = create_api_key(s, get_or_create_team(s, team), "member")
        s.commit()
    return {"Authorization": f"Bearer {key}"}


def test_the_job_answers_304_until_it_changes(client: TestClient, settings: Settings) -> None:
    job_id = client.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    first = client.get(f"/v1/jobs/{job_id}")
    tag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, no-cache"  # revalidated, never shared
    again = client.get(f"/v1/jobs/{job_id}", headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    listed = client.get(f"/v1/jobs/{job_id}", headers={"If-None-Match": f'"x", W/{tag}'})
    assert listed.status_code == 304  # one of several, weakly compared
    with session_factory(settings.resolved_database_url)() as s:  # a worker claims it
        repo.claim_job(s, job_id, 60.0)
        s.commit()
    changed = client.get(f"/v1/jobs/{job_id}", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.json()["status"] == "running"
    assert changed.headers["etag"] != tag
    assert changed.json() == client.get(f"/v1/jobs/{job_id}").json()


def test_the_list_answers_304_until_a_job_changes(client: TestClient) -> None:
    client.post("/v1/jobs", json={"spec": SPEC})
    tag = client.get("/v1/jobs").headers["etag"]
    assert client.get("/v1/jobs", headers={"If-None-Match": tag}).status_code == 304
    other_page = client.get("/v1/jobs", params={"limit": 1}, headers={"If-None-Match": tag})
    assert other_page.status_code == 200 or other_page.headers["etag"] == tag
    job_id = client.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    fresh = client.get("/v1/jobs", headers={"If-None-Match": tag})
    assert fresh.status_code == 200 and fresh.json()["items"][0]["id"] == job_id
    tag = fresh.headers["etag"]
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    canceled = client.get("/v1/jobs", headers={"If-None-Match": tag})
    assert canceled.status_code == 200 and canceled.json()["items"][0]["status"] == "canceled"


def test_a_tag_is_never_a_304_for_another_team(client: TestClient, settings: Settings) -> None:
    a, b = _member(settings, "etag-a"), _member(settings, "etag-b")
    empty_a = client.get("/v1/jobs", headers=a)
    empty_b = client.get("/v1/jobs", headers={**b, "If-None-Match": empty_a.headers["etag"]})
    assert empty_a.json() == empty_b.json()  # the same body ...
    assert empty_b.status_code == 200  # ... but another team's tag
    assert empty_b.headers["etag"] != empty_a.headers["etag"]
    job_id = client.post("/v1/jobs", json={"spec": SPEC}, headers=a).json()["id"]
    tag = client.get(f"/v1/jobs/{job_id}", headers=a).headers["etag"]
    theirs = client.get(f"/v1/jobs/{job_id}", headers={**b, "If-None-Match": tag})
    assert theirs.status_code == 404 and "etag" not in theirs.headers


@contextmanager
def _statements() -> Iterator[list[str]]:
    engine = Engine  # every engine: the app's has its own pool settings
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_reading_a_running_job_takes_three_queries(client: TestClient, settings: Settings) -> None:
    job_id = client.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    with session_factory(settings.resolved_database_url)() as s:
        repo.claim_job(s, job_id, 60.0)
        s.commit()
    client.get(f"/v1/jobs/{job_id}")  # the key's last use is written at most once a minute
    with _statements() as seen:
        r = client.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200 and r.json()["status"] == "running"
    reads = [q for q in seen if q.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 3, seen  # the key, the job with its export, its transitions

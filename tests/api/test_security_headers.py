"""Headers and who-asks-first (issue 28, finding 10).

nosniff on every answer; ``Cache-Control: no-store`` on answers that carry a
secret; the dashboard's CSP (``frame-ancestors 'none'``) on everything under
/ui; a stranger's malformed request is a 401 in the audit log, never a 4xx that
tells them how the route parses its body or query.
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from api.db.session import session_factory
from api.settings import Settings
from api.teams.audit import AuditEntry


def test_every_answer_says_nosniff(client: TestClient) -> None:
    answers = [
        client.get("/healthz"),
        client.get("/v1/jobs"),
        client.get("/v1/jobs/nope"),  # 404 problem
        client.post("/v1/jobs", json={"spec": {}}),  # 422 problem
        client.get("/v1/jobs", headers={"Authorization": ""}),  # 401
        client.get("/ui/"),
        client.get("/ui/static/nothing.js"),  # a static 404
        client.get("/openapi.json"),
        client.get("/metrics"),
        client.delete("/healthz"),  # 405
    ]
    for r in answers:
        assert r.headers.get("x-content-type-options") == "nosniff", (r.url, r.status_code)


def test_answers_that_carry_a_secret_are_no_store(client: TestClient, settings: Settings) -> None:
    allow = settings.model_copy(update={"webhook_allow_private": True})
    client.app.state.settings = allow  # type: ignore[attr-defined]
    key = client.post("/v1/admin/keys", json={"team": "default", "role": "member"})
    assert key.status_code == 201 and key.json()["key"]
    hook = client.post(
        "/v1/webhooks", json={"url": "http://localhost:9/hook", "events": ["job.failed"]}
    )
    assert hook.status_code == 201, hook.text
    assert hook.json()["secret"]
    for r in (key, hook):
        assert "no-store" in r.headers["cache-control"], r.url
    assert "no-store" not in client.get("/v1/jobs").headers.get("cache-control", "")


def test_everything_under_ui_forbids_framing(client: TestClient) -> None:
    for path in ("/ui/", "/ui/jobs/x", "/ui/static/nothing.js", "/ui/vendor/none/x.js", "/docs"):
        r = client.get(path)
        assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", ""), path
        assert r.headers.get("x-frame-options") == "DENY", path
    shell = client.get("/ui/").headers["content-security-policy"]
    assert "script-src 'self'" in shell  # the shell's own policy, kept


def test_a_strangers_malformed_request_is_a_401_in_the_audit_log(
    client: TestClient, settings: Settings
) -> None:
    stranger = {"Authorization": "Bearer tf_nokey_guess", "Content-Type": "application/json"}
    bad_bodies = [
        ("/v1/jobs", b"{not json", stranger),
        ("/v1/jobs", b'{"spec": 1}', {**stranger, "Content-Type": "text/plain"}),
        ("/v1/specs/validate", b"[" * 100 + b"]" * 100, stranger),
        ("/v1/jobs", b"{not json", {**stranger, "Authorization": ""}),  # no key at all
    ]
    for path, body, headers in bad_bodies:
        r = client.post(path, content=body, headers=headers)
        assert r.status_code == 401, (path, body[:10], r.status_code, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
    for query in ("limit=%0C9", "limit=abc", "status=nope", "cursor=%00"):
        r = client.get(f"/v1/jobs?{query}", headers={"Authorization": "Bearer tf_x_y"})
        assert r.status_code == 401, (query, r.status_code)
    with session_factory(settings.resolved_database_url)() as s:
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.outcome == 401)))
    assert rows and all(r.key_id is None for r in rows)
    # A member with a valid key still learns what is wrong with the body.
    r = client.post("/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["title"] == "Malformed JSON"

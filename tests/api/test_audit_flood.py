"""Anonymous 401s are aggregated in the audit log, and the log has a retention
(issue 18, item 8): a client guessing keys must not write a row per request."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.db.models import utcnow
from api.db.session import session_factory
from api.settings import Settings
from api.teams import audit_middleware
from api.teams.audit import AuditEntry
from tests.conftest import FakeQueue
from worker.reconciler import reconcile_once


def test_anonymous_401s_from_one_client_are_one_row_with_a_count(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_middleware, "FLUSH_REPEATS", 10)
    for i in range(35):
        bad = {"Authorization": f"Bearer tf_nokey{i}_guess"} if i % 2 else {"Authorization": ""}
        assert client.get("/v1/jobs", headers=bad).status_code == 401
    with session_factory(settings.resolved_database_url)() as s:
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.outcome == 401)))
    assert len(rows) == 1, [(r.resource, r.repeats) for r in rows]
    assert rows[0].key_id is None and rows[0].repeats == 31  # 1 + three flushes of 10
    # An authenticated request is still one row of its own.
    assert client.post("/v1/jobs", json={"spec": {}}).status_code == 422
    page = client.get("/v1/admin/audit").json()["items"]
    assert any(e["outcome"] == 401 and e["repeats"] == 31 for e in page)


def test_audit_rows_older_than_the_retention_are_deleted(
    settings: Settings, fake_queue: FakeQueue
) -> None:
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        for days in (100, 40, 1):
            at = utcnow() - timedelta(days=days)
            s.add(AuditEntry(at=at, action="GET", resource="/v1/jobs", outcome=401, client="x"))
        s.commit()
    reconcile_once(settings.model_copy(update={"audit_retention_days": 30.0}), fake_queue)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 1
    reconcile_once(settings.model_copy(update={"audit_retention_days": 0.0}), fake_queue)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 1  # 0: kept for ever

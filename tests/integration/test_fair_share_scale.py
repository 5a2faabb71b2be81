"""Fair share holds past thousands of queued jobs of one team (issue 18, item 7).

Team A has 2,500 queued jobs (more than the scheduler used to read) and was
served a moment ago; team B has one queued job, submitted last, and was never
served. The least recently served team goes first: B's job is the next claim.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from api.db.migrate import upgrade
from api.db.models import new_id, utcnow
from api.db.session import session_factory
from api.ledger import scheduling
from api.ledger.devices import Pool
from api.ledger.models import Job
from api.settings import Settings
from api.teams.repository import get_or_create_team

BIG_TEAM_QUEUED = 2500


def _fill(url: str) -> tuple[str, str]:
    """(queue, team B's job id) after inserting the big team's backlog."""
    queue = f"fair-{secrets.token_hex(4)}"
    now = utcnow()
    with session_factory(url)() as s:
        tag = secrets.token_hex(3)
        big, small = get_or_create_team(s, f"big-{tag}"), get_or_create_team(s, f"small-{tag}")
        base = {"spec": {}, "spec_version": "1", "queue": queue, "epochs": 1}
        rows = [
            {**base, "id": new_id(), "team_id": big.id, "status": "queued",
             "created_at": now - timedelta(hours=1) + timedelta(milliseconds=i)}
            for i in range(BIG_TEAM_QUEUED)
        ]  # fmt: skip
        rows.append({**base, "id": new_id(), "team_id": big.id, "status": "succeeded",
                     "created_at": now - timedelta(hours=2), "started_at": now})  # fmt: skip
        s.execute(insert(Job), rows)
        small_job = new_id()
        s.execute(insert(Job), [{**base, "id": small_job, "team_id": small.id,
                                  "status": "queued", "created_at": now}])  # fmt: skip
        s.commit()
    return queue, small_job


def _assert_small_team_first(url: str) -> None:
    queue, small_job = _fill(url)
    with session_factory(url)() as s:
        assert scheduling.pick_order(s, queue)[0] == small_job
        claimed = scheduling.claim_next(s, queue, 30, Pool(f"pool-{queue}", 1))
        s.commit()
    assert claimed is not None and claimed.job_id == small_job


@pytest.mark.integration
def test_fair_share_past_the_candidate_window_on_postgresql(pg_url: str) -> None:
    upgrade(pg_url)
    _assert_small_team_first(pg_url)


def test_fair_share_past_the_candidate_window_on_sqlite(settings: Settings, tmp_path: Path) -> None:
    _assert_small_team_first(settings.resolved_database_url)

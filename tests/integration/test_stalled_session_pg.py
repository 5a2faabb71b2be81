"""A process stalled inside a transaction (SIGSTOP, a VM pause) must not hold its row
locks for ever: the reconciler's takeover and a user's cancel need them. PostgreSQL
ends such a session after ``db_idle_in_transaction_seconds``."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from api.db.keys import get_or_create_team
from api.db.migrate import upgrade
from api.db.models import Team
from api.db.session import session_factory

pytestmark = pytest.mark.integration


def _lock_then_stall(factory: sessionmaker[Session], team_id: str) -> Session:
    stalled = factory()
    stalled.execute(update(Team).where(Team.id == team_id).values(name="stalled"))
    return stalled  # inside its transaction, holding the row lock, doing nothing


def _other_writer_gets_through(pg_url: str, team_id: str) -> bool:
    with session_factory(pg_url)() as other:
        other.execute(text("SET LOCAL lock_timeout = '4s'"))
        try:
            other.execute(update(Team).where(Team.id == team_id).values(name="other"))
        except DBAPIError:
            return False
        other.commit()
        return True


@pytest.mark.parametrize("timeout", [1.0, None], ids=["timeout", "no-timeout"])
def test_a_stalled_transaction_releases_its_locks(pg_url: str, timeout: float | None) -> None:
    upgrade(pg_url)
    with session_factory(pg_url)() as s:
        team_id = get_or_create_team(s, f"stall-{timeout}").id
        s.commit()
    stalled = _lock_then_stall(session_factory(pg_url, timeout), team_id)
    try:
        time.sleep(0.2)
        got_through = _other_writer_gets_through(pg_url, team_id)
        if timeout is None:  # the control: without the setting the lock stays held
            assert not got_through
            return
        assert got_through
        # The stalled session was ended: its late commit fails instead of landing.
        with pytest.raises(DBAPIError):
            stalled.commit()
    finally:
        stalled.rollback()
        stalled.close()
    with session_factory(pg_url)() as s:
        assert s.get(Team, team_id).name == "other"  # type: ignore[union-attr]

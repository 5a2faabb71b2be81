"""A key's secret hash never reaches a log or a traceback (issue 18, item 8).

A failed statement's parameters are part of SQLAlchemy's exception text, which
the API and the worker log; the engines hide them."""

from __future__ import annotations

import logging
import traceback

import pytest
from sqlalchemy.exc import IntegrityError

from api.db.session import make_engine, session_factory
from api.settings import Settings
from api.teams.models import ApiKey
from api.teams.repository import DEFAULT_TEAM, create_api_key, get_or_create_team


def _duplicate_key_error(url: str) -> tuple[IntegrityError, str]:
    with session_factory(url)() as s:
        key, _ = create_api_key(s, get_or_create_team(s, DEFAULT_TEAM), "member")
        s.commit()
        secret_hash = key.secret_hash
        s.add(ApiKey(id=key.id, team_id=key.team_id, role="member", secret_hash=secret_hash))
        with pytest.raises(IntegrityError) as info:
            s.commit()
    return info.value, secret_hash


def test_a_failed_statement_does_not_carry_the_secret_hash(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    exc, secret_hash = _duplicate_key_error(settings.resolved_database_url)
    text = "".join(traceback.format_exception(exc))
    assert secret_hash not in text
    logging.getLogger("test").exception("a failure", exc_info=exc)
    assert secret_hash not in caplog.text


@pytest.mark.integration
def test_on_postgresql_too(pg_url: str) -> None:
    from api.db.migrate import upgrade

    upgrade(pg_url)
    exc, secret_hash = _duplicate_key_error(pg_url)
    assert secret_hash not in "".join(traceback.format_exception(exc))
    assert make_engine(pg_url).hide_parameters

"""Alembic from empty to head on the real PostgreSQL matches the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from api.all_models import Base
from api.db.migrate import upgrade

pytestmark = pytest.mark.integration


def test_upgrade_from_empty_to_head_matches_models(pg_url: str) -> None:
    upgrade(pg_url)
    upgrade(pg_url)  # idempotent: a second run is a no-op
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diff == [], diff
    assert {"teams", "api_keys", "jobs", "job_transitions", "metric_points"} <= tables

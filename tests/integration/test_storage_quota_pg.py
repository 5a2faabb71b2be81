"""The storage quota's prune-then-fail checkpoint save on the real PostgreSQL: the same
contracts as tests/worker/test_storage_quota_prune.py (issue 28, finding 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.db.migrate import upgrade
from api.db.session import session_factory
from api.settings import Settings
from tests.worker import test_storage_quota_prune as contracts

pytestmark = pytest.mark.integration


@pytest.fixture
def factory(pg_url: str, tmp_path: Path) -> contracts.Factory:
    upgrade(pg_url)
    return session_factory(Settings(home=tmp_path, database_url=pg_url).resolved_database_url)


def test_a_save_over_the_quota_prunes_to_the_last_and_the_best(
    factory: contracts.Factory,
) -> None:
    contracts.contract_a_save_over_the_quota_prunes_to_the_last_and_the_best(factory)


def test_a_save_that_still_does_not_fit_fails_and_prunes_nothing(
    factory: contracts.Factory,
) -> None:
    contracts.contract_a_save_that_still_does_not_fit_fails_and_prunes_nothing(factory)


def test_keep_best_0_stays_0_when_pruning(factory: contracts.Factory) -> None:
    contracts.contract_keep_best_0_stays_0_when_pruning(factory)

"""Multi-row metric upserts (issue 16) on SQLite and PostgreSQL: batches larger than one
statement, a key repeated inside a batch, NaN, re-upserts by a later attempt, the fence."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from api.db.migrate import upgrade
from api.db.session import session_factory
from api.ledger import metrics as metrics_repo
from api.ledger import repository as repo
from tests.worker.test_metric_sink import Factory, running_job


@pytest.fixture(params=["sqlite", "postgresql"])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    upgrade(url)
    return session_factory(url)


def stored(factory: Factory, job_id: str) -> dict[tuple[str, int], tuple[int, float | None, int]]:
    with factory() as s:
        rows = metrics_repo.read_metrics(s, job_id, None, None)
    return {(p.name, p.step): (p.epoch, p.value, p.attempt) for p in rows}


def test_a_batch_of_several_statements_upserts_every_point(factory: Factory) -> None:
    job_id = running_job(factory)
    points = [("loss", step, step // 100, step / 2) for step in range(1, 1202)]
    points += [("acc", step, step // 100, math.nan) for step in range(1, 4)]
    with factory() as s:
        metrics_repo.write_metrics(s, job_id, 1, points)
        s.commit()
    found = stored(factory, job_id)
    assert len(found) == 1204
    assert found[("loss", 1201)] == (12, 600.5, 1)
    assert found[("acc", 2)] == (0, None, 1)  # NaN is NULL


def test_a_key_twice_in_a_batch_keeps_the_last_value_and_later_batches_overwrite(
    factory: Factory,
) -> None:
    job_id = running_job(factory)
    with factory() as s:
        metrics_repo.write_metrics(s, job_id, 1, [("loss", 5, 0, 1.0), ("loss", 5, 0, 2.0)])
        s.commit()
    assert stored(factory, job_id) == {("loss", 5): (0, 2.0, 1)}
    with factory() as s:
        metrics_repo.write_metrics(s, job_id, 1, [("loss", 5, 1, 3.0)])
        s.commit()
    assert stored(factory, job_id) == {("loss", 5): (1, 3.0, 1)}


def test_a_stale_attempt_writes_nothing(factory: Factory) -> None:
    job_id = running_job(factory)
    with factory() as s, pytest.raises(repo.StaleAttempt):
        metrics_repo.write_metrics(s, job_id, 2, [("loss", 1, 0, 1.0)] * 3)
    assert stored(factory, job_id) == {}

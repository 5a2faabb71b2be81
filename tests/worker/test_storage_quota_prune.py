"""At the storage quota a running job prunes its own checkpoints to keep_last=1 /
keep_best=1, says so in its log, saves again, and fails only when that is not enough
(issue 28, finding 6). The ``contract_*`` functions run unchanged on PostgreSQL in
tests/integration/test_storage_quota_pg.py."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.checkpoints.repository import Checkpoint
from api.db.session import session_factory
from api.ledger.models import Job
from api.settings import Settings
from api.storage.repository import StorageQuotaExceeded
from api.teams.models import Team
from api.teams.repository import DEFAULT_TEAM, get_or_create_team
from ml.sinks import CheckpointBlob
from ml.spec import JobSpec
from tests.worker.helpers import insert_job
from tests.worker.test_metric_sink import running_job
from worker.checkpoint_sink import SqlCheckpointSink
from worker.log_sink import SqlLogSink
from worker.runner import run_job

Factory = sessionmaker[Session]
SPEC = {
    "dataset": {"source": {"kind": "builtin", "name": "iris"}},
    "checkpointing": {"keep_last": 1000, "keep_best": 1, "monitor": "val_loss"},
    "epochs": 3,
}


@pytest.fixture
def factory(settings: Settings) -> Factory:
    return session_factory(settings.resolved_database_url)


def _blob(size: int) -> CheckpointBlob:
    """A checkpoint that stores exactly ``size`` bytes (weights and resume together)."""
    return CheckpointBlob(weights=b"w" * (size // 2), resume=b"r" * (size - size // 2))


def _job_of_a_team_with_quota(factory: Factory, quota: int, spec: dict[str, object]) -> str:
    """A job claimed by attempt 1, of a new team whose storage quota is ``quota`` (a team
    of its own: the PostgreSQL twin shares one database across tests)."""
    job_id = running_job(factory, spec)
    with factory() as s:
        team = get_or_create_team(s, f"quota-{secrets.token_hex(4)}")
        s.execute(update(Team).where(Team.id == team.id).values(max_storage_bytes=quota))
        s.execute(update(Job).where(Job.id == job_id).values(team_id=team.id))
        s.commit()
    return job_id


def _steps(factory: Factory, job_id: str) -> list[int]:
    with factory() as s:
        query = select(Checkpoint.step).where(Checkpoint.job_id == job_id)
        return list(s.scalars(query.order_by(Checkpoint.id)))


def _messages(lines: SqlLogSink) -> list[str]:
    return [line.message for line in lines.drain()]


def test_a_save_over_the_quota_prunes_to_the_last_and_the_best(factory: Factory) -> None:
    contract_a_save_over_the_quota_prunes_to_the_last_and_the_best(factory)


def test_a_save_that_still_does_not_fit_fails_and_prunes_nothing(factory: Factory) -> None:
    contract_a_save_that_still_does_not_fit_fails_and_prunes_nothing(factory)


def test_keep_best_0_stays_0_when_pruning(factory: Factory) -> None:
    contract_keep_best_0_stays_0_when_pruning(factory)


def contract_a_save_over_the_quota_prunes_to_the_last_and_the_best(factory: Factory) -> None:
    job_id = _job_of_a_team_with_quota(factory, 2500, SPEC)
    lines = SqlLogSink(job_id, 1, 100)
    sink = SqlCheckpointSink(factory, job_id, 1, JobSpec.model_validate(SPEC), lines=lines)
    sink.save(_blob(1000), 10, 0, {"val_loss": 0.5})  # the best
    sink.save(_blob(1000), 20, 1, {"val_loss": 0.9})
    assert _steps(factory, job_id) == [10, 20]
    _messages(lines)
    # 3,000 bytes with keep_last=1000: over 2,500. The last and the best fit (2,000).
    sink.save(_blob(1000), 30, 2, {"val_loss": 0.8})
    assert _steps(factory, job_id) == [10, 30]
    said = _messages(lines)
    assert any(
        "storage quota of 2,500 bytes" in m and "keep_last=1, keep_best=1" in m for m in said
    ), said
    assert any("deleted by retention (keep_last=1, keep_best=1)" in m for m in said), said
    # The rest of the attempt keeps the tight retention: no second warning, still 2 kept.
    sink.save(_blob(1000), 40, 3, {"val_loss": 0.7})
    assert _steps(factory, job_id) == [10, 40]
    assert not any("storage quota" in m for m in _messages(lines))


def contract_a_save_that_still_does_not_fit_fails_and_prunes_nothing(factory: Factory) -> None:
    job_id = _job_of_a_team_with_quota(factory, 2500, SPEC)
    lines = SqlLogSink(job_id, 1, 100)
    sink = SqlCheckpointSink(factory, job_id, 1, JobSpec.model_validate(SPEC), lines=lines)
    sink.save(_blob(1000), 10, 0, {"val_loss": 0.5})
    sink.save(_blob(1000), 20, 1, {"val_loss": 0.9})
    # The best (1,000) and this one (1,600) are 2,600 bytes: over 2,500 even pruned.
    with pytest.raises(StorageQuotaExceeded, match="storage quota of 2,500 bytes"):
        sink.save(_blob(1600), 30, 2, {"val_loss": 0.8})
    assert _steps(factory, job_id) == [10, 20]  # rolled back: nothing pruned, nothing added
    said = _messages(lines)
    assert any("keep_last=1, keep_best=1 for the rest of this attempt" in m for m in said)
    assert any("does not fit the storage quota even with keep_last=1" in m for m in said)


def contract_keep_best_0_stays_0_when_pruning(factory: Factory) -> None:
    spec = {**SPEC, "checkpointing": {"keep_last": 5, "keep_best": 0}}
    job_id = _job_of_a_team_with_quota(factory, 1500, spec)
    sink = SqlCheckpointSink(factory, job_id, 1, JobSpec.model_validate(spec))
    sink.save(_blob(1000), 10, 0, {"val_loss": 0.5})
    sink.save(_blob(1000), 20, 1, {"val_loss": 0.9})  # 2,000: the best is not kept
    assert _steps(factory, job_id) == [20]


def test_a_job_at_the_quota_trains_on_with_its_last_checkpoint(settings: Settings) -> None:
    """The worker end to end: a job whose keep_last would pass the quota succeeds."""
    factory = session_factory(settings.resolved_database_url)
    spec = {
        "dataset": {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 16},
        "model": {"kind": "mlp", "hidden_units": [16]},
        "checkpointing": {"every_n_epochs": 1, "keep_last": 1000, "keep_best": 0},
        "epochs": 4,
    }
    with factory() as s:
        job_id = insert_job(s, spec)
        s.commit()
    run_job(job_id, settings)  # measures this spec's checkpoint: 4 of them, no quota
    with factory() as s:
        stored = s.scalars(select(Checkpoint.id).where(Checkpoint.job_id == job_id)).all()
        assert len(stored) == 4  # every epoch's checkpoint is kept
        used = _team_bytes(s)
        # Room for two and a half more: the second job's third checkpoint does not fit.
        quota = used + (used // 4) * 5 // 2
        s.execute(update(Team).where(Team.name == DEFAULT_TEAM).values(max_storage_bytes=quota))
        second = insert_job(s, spec)
        s.commit()
    run_job(second, settings)
    with factory() as s:
        job = s.get(Job, second)
        assert job is not None
        assert (job.status, job.status_reason) == ("succeeded", "completed"), job.error
        kept = s.scalars(select(Checkpoint.step).where(Checkpoint.job_id == second)).all()
        assert len(kept) == 1  # keep_last=1 once at the limit
    logs = _log_lines(settings, second)
    assert any("keep_last=1, keep_best=0 for the rest of this attempt" in m for m in logs), logs


def _team_bytes(session: Session) -> int:
    from api.storage.repository import usage

    team_id = session.scalar(select(Team.id).where(Team.name == DEFAULT_TEAM))
    assert team_id is not None
    return usage(session, team_id).total_bytes


def _log_lines(settings: Settings, job_id: str) -> list[str]:
    from api.joblogs.models import JobLogLine

    with session_factory(settings.resolved_database_url)() as s:
        return list(s.scalars(select(JobLogLine.message).where(JobLogLine.job_id == job_id)))

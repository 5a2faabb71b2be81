"""A checkpoint that would take the team past its storage quota fails the job, stores nothing."""

from __future__ import annotations

from sqlalchemy import func, select, update

from api.checkpoints.repository import Checkpoint
from api.db.session import session_factory
from api.ledger.models import Job
from api.settings import Settings
from api.teams.models import Team
from api.teams.repository import DEFAULT_TEAM
from tests.worker.helpers import insert_job
from worker.runner import run_job

IRIS = {
    "dataset": {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 16},
    "model": {"kind": "mlp", "hidden_units": [16]},
    "checkpointing": {"every_n_epochs": 1, "keep_last": 1000},
    "epochs": 3,
}


def test_a_checkpoint_over_the_team_quota_fails_the_job(settings: Settings) -> None:
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        job_id = insert_job(s, IRIS)
        s.execute(update(Team).where(Team.name == DEFAULT_TEAM).values(max_storage_bytes=1000))
        s.commit()
    run_job(job_id, settings)
    with factory() as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert (job.status, job.status_reason) == ("failed", "storage_quota_exceeded")
        assert job.error and "storage quota of 1,000 bytes" in job.error
        stored = s.scalar(select(func.count()).where(Checkpoint.job_id == job_id))
        assert stored == 0
        # where it stopped: the first epoch's checkpoint (120 training rows / 16 = 8 steps)
        assert (job.progress_epoch, job.progress_step) == (1, 8)


def test_a_team_without_a_quota_is_held_to_the_default(settings: Settings) -> None:
    # Issue 28, 6: TRAINFORGE_DEFAULT_STORAGE_QUOTA_BYTES for teams with no quota of their own.
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        job_id = insert_job(s, IRIS)
        s.commit()
    run_job(job_id, settings.model_copy(update={"default_storage_quota_bytes": 1000}))
    with factory() as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert (job.status, job.status_reason) == ("failed", "storage_quota_exceeded")
        assert job.error and "storage quota of 1,000 bytes" in job.error

"""A stopping worker hands its running job back at once (issue 28, finding 11).

Celery's warm shutdown (SIGTERM, Ctrl-C) sends ``worker_shutting_down``: the job
stops at its next step, checkpoints, and is ``queued`` again (reason
``worker_shutdown``, not a restart) with its doorbell rung; the next worker resumes
it from that checkpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from celery.signals import worker_shutting_down

from api.db.session import session_factory
from api.ledger import repository as repo
from api.ledger.models import Job
from api.settings import Settings
from tests.worker.helpers import insert_job
from worker import runner
from worker.runner import run_job
from worker.shutdown import STOPPING

SYNTHETIC = {"n_samples": 4096, "n_features": 32}
LONG = {
    "dataset": {
        "source": {"kind": "builtin", "name": "synthetic", "synthetic": SYNTHETIC},
        "batch_size": 8,
    },
    "epochs": 500,
}


class Doorbell:
    def __init__(self) -> None:
        self.rung: list[tuple[str, str]] = []

    def publish(self, job_id: str, queue: str) -> None:
        self.rung.append((job_id, queue))


@pytest.fixture
def doorbell(monkeypatch: pytest.MonkeyPatch) -> Iterator[Doorbell]:
    bell = Doorbell()
    monkeypatch.setattr(runner, "CeleryJobQueue", lambda settings: bell)
    STOPPING.clear()
    yield bell
    STOPPING.clear()


def _job(settings: Settings) -> Job:
    with session_factory(settings.resolved_database_url)() as s:
        job = s.get(Job, _JOB[0])
        assert job is not None
        return job


_JOB: list[str] = []


def _run_until_training(settings: Settings, job_id: str) -> threading.Thread:
    worker = threading.Thread(target=run_job, args=(job_id, settings))
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = _job(settings)
        if job.status == "running" and job.progress_step > 0:
            return worker
        time.sleep(0.05)
    raise AssertionError("the job never started training")


def test_a_stopping_worker_hands_its_job_back_and_the_next_one_resumes_it(
    settings: Settings, doorbell: Doorbell
) -> None:
    with session_factory(settings.resolved_database_url)() as s:
        _JOB[:] = [insert_job(s, LONG)]
        s.commit()
    job_id = _JOB[0]
    worker = _run_until_training(settings, job_id)
    worker_shutting_down.send(sender="test-worker", sig="SIGTERM", how="Warm", exitcode=0)
    asked = time.monotonic()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert time.monotonic() - asked < 2  # the audit saw ~15 s of training on
    job = _job(settings)
    handed_back = (job.status, job.status_reason, job.restarts, job.attempt)
    assert handed_back == ("queued", "worker_shutdown", 0, 1)
    assert job.lease_expires_at is None and job.finished_at is None
    assert (job_id, job.queue) in doorbell.rung  # the next worker starts it at once
    with session_factory(settings.resolved_database_url)() as s:
        moves = [(t.from_status, t.to_status, t.reason) for t in repo.transitions(s, job_id)]
    assert moves[-1] == ("running", "queued", "worker_shutdown")
    stopped_at = job.progress_step

    STOPPING.clear()  # the restarted worker
    worker = _run_until_training(settings, job_id)
    job = _job(settings)
    assert job.attempt == 2 and job.progress_step >= stopped_at  # resumed, not restarted
    STOPPING.set()
    worker.join(timeout=30)
    assert _job(settings).status == "queued"

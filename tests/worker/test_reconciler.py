"""The reconciler: lost messages re-published, expired leases requeued or failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import update

from api.db.models import utcnow
from api.db.session import session_factory
from api.ledger import lifecycle
from api.ledger import repository as repo
from api.ledger.models import Job
from api.settings import Settings
from tests.worker.test_runner import IRIS, make_job
from worker.reconciler import reconcile_once


@dataclass
class Recorder:
    published: list[str] = field(default_factory=list)

    def publish(self, job_id: str, queue: str) -> None:
        self.published.append(job_id)

    def ping(self) -> None:
        return None


def _expire(settings: Settings, job_id: str) -> None:
    with session_factory(settings.resolved_database_url)() as s:
        s.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        s.commit()


def _claim(settings: Settings, job_id: str) -> int:
    with session_factory(settings.resolved_database_url)() as s:
        attempt = repo.claim_job(s, job_id, 30)
        s.commit()
    assert attempt is not None
    return attempt


def _job(settings: Settings, job_id: str) -> Job:
    with session_factory(settings.resolved_database_url)() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def test_a_queued_job_without_a_recent_message_is_republished(settings: Settings) -> None:
    job_id = make_job(settings, IRIS)  # published_at is None: never rang
    queue = Recorder()
    reconcile_once(settings, queue)
    assert queue.published == [job_id]
    reconcile_once(settings, queue)  # rang just now: not again until republish_after
    assert queue.published == [job_id]


def test_an_expired_lease_is_requeued_then_failed_after_max_restarts(settings: Settings) -> None:
    job_id = make_job(settings, {**IRIS, "retry": {"max_restarts": 1}})
    queue = Recorder()
    reconcile_once(settings, queue)
    _claim(settings, job_id)
    _expire(settings, job_id)
    reconcile_once(settings, queue)
    job = _job(settings, job_id)
    assert (job.status, job.status_reason, job.restarts) == ("queued", "worker_lost", 1)
    assert queue.published[-1] == job_id
    assert _claim(settings, job_id) == 2  # the next claim fences the lost attempt off
    _expire(settings, job_id)
    reconcile_once(settings, queue)
    job = _job(settings, job_id)
    assert (job.status, job.status_reason) == ("failed", "worker_lost")
    assert job.error and "max_restarts" in job.error


def test_a_live_lease_is_left_alone(settings: Settings) -> None:
    job_id = make_job(settings, IRIS)
    _claim(settings, job_id)
    reconcile_once(settings, Recorder())
    assert _job(settings, job_id).status == "running"


def test_a_canceled_job_whose_worker_died_ends_canceled(settings: Settings) -> None:
    job_id = make_job(settings, IRIS)
    _claim(settings, job_id)
    with session_factory(settings.resolved_database_url)() as s:
        job = s.get(Job, job_id)
        assert job is not None
        repo.request_cancel(s, job)
        s.commit()
    _expire(settings, job_id)
    queue = Recorder()
    reconcile_once(settings, queue)
    job = _job(settings, job_id)
    assert (job.status, job.status_reason) == ("canceled", "canceled_by_user")
    assert job_id not in queue.published


def test_transition_table_rejects_the_impossible() -> None:
    lifecycle.check_transition("running", "queued")
    for bad in (("succeeded", "running"), ("queued", "succeeded"), ("canceled", "running")):
        try:
            lifecycle.check_transition(*bad)
        except lifecycle.InvalidTransition:
            continue
        raise AssertionError(bad)

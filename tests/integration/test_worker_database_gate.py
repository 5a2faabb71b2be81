"""A worker whose database breaks after it started stops consuming, leaves the messages
in the broker for other workers, says why in its log, and resumes when the database is
usable again (issue 28, finding 12). A real `trainforge worker` over a real Redis."""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest
import redis
from sqlalchemy import update

from api.db.session import session_factory
from api.ledger.models import Job
from api.queue import CeleryJobQueue
from api.settings import Settings
from tests.procs import start_worker
from tests.worker.helpers import insert_job
from worker.idle_doorbell import schema_head

pytestmark = pytest.mark.integration

STOPPED = "not consuming any job message"
RESUMED = "the database is usable again"
OLD_REVISION = "3295140b53bf"  # an earlier revision: the schema this code does not run on


@pytest.fixture
def redis_settings(settings: Settings, redis_url: str) -> Settings:
    return Settings(
        home=settings.home,
        database_url=settings.resolved_database_url,  # the test's own SQLite, at head
        broker_url=redis_url,
        queue=f"tf-gate-{secrets.token_hex(4)}",
        heartbeat_seconds=0.5,
    )


@pytest.fixture
def worker(redis_settings: Settings, tmp_path: Path) -> Iterator[Path]:
    proc: subprocess.Popen[bytes] = start_worker(
        redis_settings,
        tmp_path / "w",
        "worker",
        TRAINFORGE_DATABASE_CHECK_SECONDS="0.2",
        TRAINFORGE_IDLE_CLAIM_SECONDS="1",  # an idle worker claims from the ledger
        TRAINFORGE_RECONCILER="false",
        TRAINFORGE_WEBHOOK_SENDER="false",
    )
    log = tmp_path / "w" / "worker.log"
    try:
        _until(lambda: "ready" in log.read_text(), log, "the worker to start")
        yield log
    finally:  # its clean stop is not under test here: no need to wait for it
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _until(event: Callable[[], bool], log: Path, what: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not event():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {limit}s for {what}; worker log:\n{log.read_text()}")
        time.sleep(0.05)


def _set_revision(settings: Settings, revision: str | None) -> None:
    path = settings.resolved_database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    conn.close()


def _status(settings: Settings, job_id: str) -> str:
    with session_factory(settings.resolved_database_url)() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job.status


def _queued_job(settings: Settings) -> str:
    """A queued job of the worker's queue, no doorbell rung for it."""
    with session_factory(settings.resolved_database_url)() as s:
        job_id = insert_job(s, {"dataset": {"source": {"kind": "builtin", "name": "iris"}}})
        s.execute(update(Job).where(Job.id == job_id).values(queue=settings.queue))
        s.commit()
    return job_id


def test_a_worker_whose_database_breaks_stops_consuming_and_resumes(
    redis_settings: Settings, worker: Path
) -> None:
    settings = redis_settings
    _set_revision(settings, OLD_REVISION)  # the database is now at a schema it cannot run
    _until(lambda: STOPPED in worker.read_text(), worker, "the worker to stop consuming")
    assert OLD_REVISION in worker.read_text()  # it says why

    _set_revision(settings, schema_head(settings))
    job_id = _queued_job(settings)  # (written at head, then the schema breaks again)
    _set_revision(settings, OLD_REVISION)
    CeleryJobQueue(settings).publish(job_id, settings.queue)  # a doorbell, meant for others
    said = worker.read_text().count(STOPPED)
    # Several checks (and idle-claim rounds) later, a consuming worker would long have
    # taken it (BRPOP: milliseconds), and an idle doorbell would have rung a second one.
    _until(lambda: worker.read_text().count(STOPPED) >= said + 6, worker, "six more checks")
    broker = redis.Redis.from_url(settings.resolved_broker_url)
    assert broker.llen(settings.queue) == 1, "the worker took (or rang) a message"
    assert _status(settings, job_id) == "queued"

    _set_revision(settings, schema_head(settings))  # the database is usable again
    _until(lambda: RESUMED in worker.read_text(), worker, "the worker to resume")
    _until(lambda: _status(settings, job_id) == "succeeded", worker, "the job to run")
    assert broker.llen(settings.queue) == 0

    # The first half of finding 12: a job whose doorbell was lost (none rung at all) is
    # claimed by the idle worker from the SQL ledger (TRAINFORGE_IDLE_CLAIM_SECONDS=1).
    started = time.monotonic()
    lost = _queued_job(settings)
    _until(lambda: _status(settings, lost) == "succeeded", worker, "the lost-doorbell job")
    print(f"a job with no doorbell ran to its end {time.monotonic() - started:.1f}s after it "
          "was queued (idle claim interval 1 s)")  # fmt: skip

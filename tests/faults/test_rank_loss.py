"""A data-parallel rank killed mid-run (issue 27): the attempt fails at once, the other
rank is stopped rather than left on a collective, and the job is retried under
``retry.max_restarts`` as after a lost worker; once they are spent it fails.

The worker's runner trains a 2-process job in this process; a thread SIGKILLs rank 1
(a child of this process, found by its start line) once it trains. The thread's join
guard only turns a hang into a failure; the time from the kill to the attempt's end
is printed (measured: well under a second here).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

from sqlalchemy import select

from api.db.session import session_factory
from api.joblogs.models import JobLogLine
from api.ledger.models import Job
from api.settings import Settings
from tests.worker.helpers import insert_job
from worker.runner import run_job

SPEC = {
    "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 64},
    "model": {"kind": "mlp", "hidden_units": [32]},
    "epochs": 200,  # far more than it will ever run
    "resources": {"device": "cpu", "devices": 2},
    "retry": {"max_restarts": 1},
}


def _kill_rank_one(killed: list[float]) -> None:
    """Once both ranks run (and a moment of training), SIGKILL rank 1's process."""
    while True:
        ranks = sorted(multiprocessing.active_children(), key=lambda p: p.pid or 0)
        if len(ranks) >= 2:
            break
        time.sleep(0.05)
    time.sleep(1.0)  # rendezvous, data, a few steps
    victim = ranks[-1]
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    killed.append(time.monotonic())


def _attempt(settings: Settings, job_id: str) -> tuple[float, list[int]]:
    killed: list[float] = []
    killer = threading.Thread(target=_kill_rank_one, args=(killed,), daemon=True)
    killer.start()
    run_job(job_id, settings)
    ended = time.monotonic()
    killer.join(timeout=60)
    assert killed, "the rank was never killed"
    left = [p.pid or 0 for p in multiprocessing.active_children()]
    return ended - killed[0], left


def test_a_killed_rank_fails_the_attempt_and_the_job_is_retried(settings: Settings) -> None:
    settings = settings.model_copy(update={"unsafe_no_republish": True})
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        job_id = insert_job(s, SPEC)
        s.commit()

    seconds, left = _attempt(settings, job_id)
    print(f"attempt 1 ended {seconds:.2f} s after its rank 1 was killed")
    assert left == []  # rank 0 did not stay behind on a collective
    with factory() as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert (job.status, job.status_reason, job.restarts) == ("queued", "worker_lost", 1)
        lines = s.scalars(select(JobLogLine.message).where(JobLogLine.job_id == job_id)).all()
    assert any("rank 1 died (signal 9)" in line for line in lines)
    assert any(line.startswith("[rank 1] rank 1 of 2 on cpu") for line in lines)

    seconds, left = _attempt(settings, job_id)  # the retry, killed too: max_restarts is spent
    print(f"attempt 2 ended {seconds:.2f} s after its rank 1 was killed")
    assert left == []
    with factory() as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert (job.status, job.status_reason, job.attempt) == ("failed", "worker_lost", 2)
        assert job.error is not None and "retry.max_restarts is 1" in job.error

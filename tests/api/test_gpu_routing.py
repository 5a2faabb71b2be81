"""resources.device cuda (issue 17): the job goes to the GPU queue and, while no alive worker
consumes that queue, says `waiting_for_gpu`; workers consume the GPU queue only with a GPU."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.db.models import utcnow
from api.db.session import session_factory
from api.ledger import workers
from api.settings import Settings
from tests.conftest import FakeQueue
from worker.queues import worker_queues

CUDA = {"dataset": {"source": {"kind": "builtin", "name": "digits"}},
        "resources": {"device": "cuda"}}  # fmt: skip
CPU = {"dataset": {"source": {"kind": "builtin", "name": "digits"}}}


def beat(settings: Settings, worker_id: str, queues: str, age: timedelta = timedelta()) -> None:
    with session_factory(settings.resolved_database_url)() as s:
        workers.beat(s, worker_id, queues)
        s.execute(
            update(workers.WorkerPresence)
            .where(workers.WorkerPresence.id == worker_id)
            .values(heartbeat_at=utcnow() - age)
        )
        s.commit()


def test_a_cuda_job_waits_for_a_gpu_worker(
    client: TestClient, settings: Settings, fake_queue: FakeQueue
) -> None:
    job = client.post("/v1/jobs", json={"spec": CUDA}).json()
    cpu_job = client.post("/v1/jobs", json={"spec": CPU}).json()
    assert fake_queue.published == [(job["id"], "trainforge.cuda"), (cpu_job["id"], "trainforge")]
    assert job["queue_reason"] == "waiting_for_gpu"  # no worker at all
    beat(settings, "cpu-1", "trainforge")
    beat(settings, "gpu-stale", "trainforge,trainforge.cuda", age=timedelta(minutes=5))
    assert client.get(f"/v1/jobs/{job['id']}").json()["queue_reason"] == "waiting_for_gpu"
    assert client.get(f"/v1/jobs/{cpu_job['id']}").json()["queue_reason"] == "waiting_for_worker"
    beat(settings, "gpu-0", "trainforge,trainforge.cuda")
    assert client.get(f"/v1/jobs/{job['id']}").json()["queue_reason"] == "waiting_for_worker"


def test_workers_consume_the_gpu_queue_only_with_a_gpu(settings: Settings) -> None:
    assert worker_queues(settings, None, has_gpu=False) == "trainforge"
    assert worker_queues(settings, None, has_gpu=True) == "trainforge,trainforge.cuda"
    assert worker_queues(settings, "trainforge,trainforge.cuda", has_gpu=False) == "trainforge"
    both = "trainforge,trainforge.cuda"
    assert worker_queues(settings, both, has_gpu=True) == both
    with pytest.raises(SystemExit, match="no queue left"):
        worker_queues(settings, "trainforge.cuda", has_gpu=False)

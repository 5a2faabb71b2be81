"""Fault injection with real PostgreSQL, Redis and `trainforge worker` processes.

Each scenario runs twice: with its protection on it must pass, and with the
protection switched off (a fixture flag) it must fail -- proof that the
scenario can see the fault it claims to survive.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from api.db.session import session_factory
from api.ledger.events import JobEvent
from tests.faults.cluster import SCALE, Cluster, fault_spec, restart_postgres, restart_redis

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def _sigkill_scenario(c: Cluster, protection: bool) -> None:
    env = {} if protection else {"TRAINFORGE_RECONCILER": "false"}
    specs = [fault_spec(seed) for seed in range(1 + SCALE)]
    spe = c.steps_per_epoch(specs[0])
    total = spe * specs[0]["epochs"]
    rng = random.Random(7)
    worker = c.start_worker(**env)
    jobs = [c.submit(s) for s in specs]
    killed: set[str] = set()
    for _ in range(2 * SCALE):
        target = c.wait_any_running(jobs, timeout=60 if protection else 20)
        if target is None:
            break
        # A random point of the run, between steps and across epoch boundaries.
        at = min(total - 5, target["progress"]["step"] + rng.randint(5, 2 * spe))
        if (
            c.wait_running_past(target["id"], at, timeout=60 if protection else 20)["status"]
            != "running"
        ):
            continue
        c.kill(worker)
        killed.add(target["id"])
        worker = c.start_worker(**env)
    done = c.wait_done(jobs, timeout=240 if protection else 25)
    for job, spec in zip(done, specs, strict=True):
        assert job["status"] == "succeeded", (job["status"], job["error"])
        c.assert_one_continuous_history(job["id"], spec)
        if job["id"] in killed:
            reasons = [(t["from_status"], t["to_status"], t["reason"]) for t in job["transitions"]]
            assert ("running", "queued", "worker_lost") in reasons
    assert killed


@pytest.mark.parametrize("protection", [True, False], ids=["protected", "unprotected"])
def test_sigkilled_workers_lose_no_job_and_no_metric(cluster: Cluster, protection: bool) -> None:
    if protection:
        _sigkill_scenario(cluster, True)
    else:
        with pytest.raises(AssertionError):
            _sigkill_scenario(cluster, False)


def test_a_resumed_job_ends_with_the_weights_of_an_uninterrupted_run(cluster: Cluster) -> None:
    import io

    import torch
    from safetensors.torch import load, load_file  # noqa: F401

    import ml
    from ml.sinks import MemoryCheckpointSink
    from ml.spec import JobSpec

    spec = fault_spec(11, epochs=5)
    worker = cluster.start_worker()
    job_id = cluster.submit(spec)
    spe = cluster.steps_per_epoch(spec)
    cluster.wait_running_past(job_id, 2 * spe + spe // 2)
    cluster.kill(worker)
    cluster.start_worker()
    (job,) = cluster.wait_done([job_id], 240)
    assert job["status"] == "succeeded" and job["attempt"] == 2
    cluster.assert_one_continuous_history(job_id, spec)
    items = cluster.client.get(f"/v1/jobs/{job_id}/checkpoints", headers=cluster.auth).json()[
        "items"
    ]
    last = max(items, key=lambda i: i["step"])
    blob = cluster.client.get(
        f"/v1/jobs/{job_id}/checkpoints/{last['id']}/download", headers=cluster.auth
    ).content
    resumed = load(blob)
    reference = MemoryCheckpointSink()
    ml.train(JobSpec.model_validate(spec), checkpoints=reference)
    uninterrupted = load(reference.saved[-1][0].weights)
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.equal(resumed[name], tensor), name
    del io


def _redis_scenario(c: Cluster, protection: bool) -> None:
    # The protection: the ledger re-rings lost doorbells (the reconciler, and a worker
    # ringing for the next job when it finishes one).
    env = {} if protection else {"TRAINFORGE_UNSAFE_NO_REPUBLISH": "true"}
    specs = [fault_spec(20 + i, epochs=4) for i in range(2 + SCALE)]
    c.start_worker(**env)
    jobs = [c.submit(s) for s in specs]
    c.wait_running_past(jobs[0], 10)  # one running, the others queued in Redis
    restart_redis()
    # Unprotected, twice what the protected run needs (~14 s): the jobs never finish.
    done = c.wait_done(jobs, timeout=300 if protection else 30)
    for job, spec in zip(done, specs, strict=True):
        assert job["status"] == "succeeded", (job["status"], job["error"])
        c.assert_one_continuous_history(job["id"], spec)


@pytest.mark.restarts
@pytest.mark.parametrize("protection", [True, False], ids=["protected", "unprotected"])
def test_redis_restart_without_persistence_loses_no_job(cluster: Cluster, protection: bool) -> None:
    if protection:
        _redis_scenario(cluster, True)
    else:
        with pytest.raises(AssertionError):
            _redis_scenario(cluster, False)


def _fencing_scenario(c: Cluster, protection: bool) -> None:
    env = {} if protection else {"TRAINFORGE_UNSAFE_NO_FENCING": "true"}
    spec = fault_spec(30, epochs=6)
    spe = c.steps_per_epoch(spec)
    first = c.start_worker(**env)
    job_id = c.submit(spec)
    c.wait_running_past(job_id, spe + 5)
    c.pause(first)  # past its lease: the reconciler hands the job to the second worker
    c.start_worker(**env)
    c.wait(job_id, lambda j: j["attempt"] == 2 and j["status"] == "running", 60, "re-claimed")
    c.resume(first)  # the paused worker wakes up and tries to go on writing
    (job,) = c.wait_done([job_id], 240)
    time.sleep(3)  # anything the stale worker still manages to write lands by now
    assert job["status"] == "succeeded"
    job = c.job(job_id)
    finishes = [t for t in job["transitions"] if t["to_status"] == "succeeded"]
    assert len(finishes) == 1 and finishes[0]["attempt"] == 2
    c.assert_one_continuous_history(job_id, spec)
    # After the takeover, every metric batch that landed came from attempt 2: the
    # paused worker's writes were all rejected.
    with session_factory(c.settings.resolved_database_url)() as s:
        events = list(
            s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
        )
    takeover = next(
        e.id
        for e in events
        if e.kind == "status"
        and e.payload.get("attempt") == 2
        and e.payload.get("to_status") == "running"
    )
    writers = {e.payload["attempt"] for e in events if e.kind == "metrics" and e.id > takeover}
    assert writers == {2}, f"metric batches after the takeover came from attempts {writers}"


@pytest.mark.parametrize("protection", [True, False], ids=["protected", "unprotected"])
def test_a_paused_worker_is_fenced_off(cluster: Cluster, protection: bool) -> None:
    if protection:
        _fencing_scenario(cluster, True)
    else:
        with pytest.raises(AssertionError):
            _fencing_scenario(cluster, False)


def _frozen_writer_scenario(c: Cluster, protection: bool) -> None:
    # The protection: the reconciler ends a session that holds an expired job's row
    # (stalled_lock_seconds), and PostgreSQL one idle inside a transaction
    # (db_idle_in_transaction_seconds); the cluster sets both to 3 s, unprotected a day.
    env = {"PGAPPNAME": "tf-frozen-writer"}
    off = {
        "TRAINFORGE_DB_IDLE_IN_TRANSACTION_SECONDS": "86400",
        "TRAINFORGE_STALLED_LOCK_SECONDS": "86400",
    }
    spec = fault_spec(35, epochs=6)
    first = c.start_worker(**env, **({} if protection else off))
    job_id = c.submit(spec)
    c.wait_running_past(job_id, 5)
    # Frozen while holding the job row's lock: the takeover needs that row.
    c.pause_inside_a_job_write(first, env["PGAPPNAME"], job_id)
    c.start_worker(**({} if protection else off))
    # Protected, the takeover comes within ~10 s (lease 4 s, stalled lock 3 s); unprotected
    # it never comes, and 30 s is three times that.
    reclaim = 60 if protection else 30
    c.wait(job_id, lambda j: j["attempt"] == 2 and j["status"] == "running", reclaim, "re-claimed")
    c.resume(first)
    (job,) = c.wait_done([job_id], 240)
    assert job["status"] == "succeeded", job["error"]
    c.assert_one_continuous_history(job_id, spec)


@pytest.mark.parametrize("protection", [True, False], ids=["protected", "unprotected"])
def test_a_worker_frozen_inside_a_write_does_not_block_the_takeover(
    cluster: Cluster, protection: bool
) -> None:
    if protection:
        _frozen_writer_scenario(cluster, True)
    else:
        with pytest.raises(AssertionError, match="not re-claimed"):
            _frozen_writer_scenario(cluster, False)


def _postgres_scenario(c: Cluster, protection: bool) -> None:
    from sqlalchemy.exc import InterfaceError, OperationalError

    if not protection:  # the 503 handler switched off: a database outage becomes a 500
        app: Any = c.client.app
        for exc in (OperationalError, InterfaceError):
            app.exception_handlers.pop(exc, None)
        app.middleware_stack = None  # rebuilt with the handlers left
        c.client.raise_server_exceptions = False
    spec = fault_spec(40, epochs=6)
    c.start_worker()
    job_id = c.submit(spec)
    c.wait_running_past(job_id, 20)
    codes: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                codes.append(c.client.get(f"/v1/jobs/{job_id}", headers=c.auth).status_code)
            except Exception:  # noqa: BLE001 - an exception escaping the app is a 500 to a client
                codes.append(500)
            time.sleep(0.1)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        restart_postgres(down_seconds=3)
        time.sleep(2)
    finally:
        stop.set()
        poller.join()
    assert 503 in codes, "the outage was not observed"
    assert set(codes) <= {200, 503}, sorted(set(codes))
    (job,) = c.wait_done([job_id], 240)
    assert job["status"] == "succeeded", job["error"]
    c.assert_one_continuous_history(job_id, spec)


@pytest.mark.restarts
@pytest.mark.parametrize("protection", [True, False], ids=["protected", "unprotected"])
def test_postgres_restart_mid_run(cluster: Cluster, protection: bool) -> None:
    if protection:
        _postgres_scenario(cluster, True)
    else:
        with pytest.raises(AssertionError):
            _postgres_scenario(cluster, False)


def _poison_scenario(c: Cluster, protection: bool) -> dict[str, Any]:
    env = {} if protection else {"TRAINFORGE_UNSAFE_IGNORE_MAX_RESTARTS": "true"}
    spec = fault_spec(50, epochs=20, max_restarts=2)
    worker = c.start_worker(**env)
    job_id = c.submit(spec)
    attempt = 0
    for _ in range(spec["retry"]["max_restarts"] + 2):  # its worker dies every time
        job = c.wait(
            job_id,
            lambda j, seen=attempt: (
                (j["status"] == "running" and j["attempt"] > seen) or j["status"] == "failed"
            ),
            60,
            "claimed again",
        )
        if job["status"] == "failed":
            break
        attempt = job["attempt"]
        # One claim past max_restarts + 1 is already the failure the protection prevents.
        assert attempt <= spec["retry"]["max_restarts"] + 1, f"claimed a {attempt}th time"
        c.wait_running_past(job_id, job["progress"]["step"] + 3)
        c.kill(worker)
        worker = c.start_worker(**env)
    job = c.wait(job_id, lambda j: j["status"] == "failed", 30, "failed")
    assert job["status_reason"] == "worker_lost"
    assert job["attempt"] == spec["retry"]["max_restarts"] + 1
    return job


@pytest.mark.parametrize("protection", [True, False], ids=["protected", "unprotected"])
def test_a_poison_job_fails_after_max_restarts(cluster: Cluster, protection: bool) -> None:
    if protection:
        _poison_scenario(cluster, True)
    else:
        with pytest.raises(AssertionError):
            _poison_scenario(cluster, False)

"""A small real deployment for fault injection: PostgreSQL, Redis, `trainforge worker`
processes, and the API in-process, plus the faults themselves."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.settings import Settings
from tests.procs import start_worker, stop

SCALE = int(os.environ.get("TRAINFORGE_FAULT_SCALE", "1"))  # `make faults` raises it
REDIS_START = (
    "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' "
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def fault_spec(seed: int, *, epochs: int = 6, max_restarts: int = 6) -> dict[str, Any]:
    """A deterministic job long enough (seconds) to be hit mid-run, checkpointed each epoch."""
    return {
        "dataset": {
            "source": {
                "kind": "builtin",
                "name": "synthetic",
                "synthetic": {"n_samples": 4000, "n_features": 128},
            },
            "batch_size": 16,
            "validation_split": 0.2,
        },
        "model": {"kind": "mlp", "hidden_units": [512, 512]},
        "optimizer": {"kind": "sgd", "lr": 0.05, "momentum": 0.9},
        "epochs": epochs,
        "seed": seed,
        "deterministic": True,
        "checkpointing": {"every_n_epochs": 1, "keep_last": 2, "keep_best": 1},
        "retry": {"max_restarts": max_restarts},
    }


@dataclass
class Cluster:
    settings: Settings
    client: TestClient
    key: str
    home: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    # ------------------------------------------------------------------ workers
    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        name = f"worker{len(self.workers)}"
        proc = start_worker(self.settings, self.home / name, name, **env)
        self.workers.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def pause(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGSTOP)

    def resume(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGCONT)

    def pause_inside_a_job_write(
        self, proc: subprocess.Popen[bytes], app_name: str, job_id: str, timeout: float = 90
    ) -> None:
        """SIGSTOP ``proc`` while one of its database sessions is inside a transaction
        that holds the job's row lock (the row's xmax is its transaction): a checkpoint,
        a metric flush or a heartbeat caught between its fence and its commit. A
        transaction that only touched the jobs table (an UPDATE that matched no row,
        another job's row) does not count. The worker must have been started with
        ``PGAPPNAME=app_name``."""
        engine = create_engine(self.settings.resolved_database_url, isolation_level="AUTOCOMMIT")
        writing = text(
            "SELECT a.pid, a.backend_xid::text FROM pg_stat_activity a "
            "JOIN jobs j ON j.id = :job AND j.xmax::text = a.backend_xid::text "
            "WHERE a.application_name = :app AND a.backend_xid IS NOT NULL"
        )
        deadline = time.monotonic() + timeout
        try:
            with engine.connect() as conn:
                while time.monotonic() < deadline:
                    args = {"app": app_name, "job": job_id}
                    before = set(conn.execute(writing, args).all())
                    if before:
                        self.pause(proc)
                        time.sleep(0.2)  # let the server finish what it had received
                        # Still the same transaction once stopped: caught inside it.
                        if before & set(conn.execute(writing, args).all()):
                            return
                        self.resume(proc)
                    time.sleep(0.002)
        finally:
            engine.dispose()
        raise AssertionError(f"never caught {app_name} inside a job-row write in {timeout}s")

    def stop_all(self) -> None:
        for proc in self.workers:
            stop(proc)

    def logs(self) -> str:
        return "\n".join(p.read_text()[-4000:] for p in self.home.glob("*/*.log"))

    # ------------------------------------------------------------------ API
    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def submit(self, spec: dict[str, Any]) -> str:
        r = self.client.post("/v1/jobs", json={"spec": spec}, headers=self.auth)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/jobs/{job_id}", headers=self.auth)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def wait(self, job_id: str, pred: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        job = self.job(job_id)
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if pred(job):
                return job
            time.sleep(0.2)
        raise AssertionError(
            f"job {job_id}: not {what} after {timeout}s "
            f"(status {job['status']}, attempt {job['attempt']})"
        )

    def wait_any_running(self, job_ids: list[str], timeout: float) -> dict[str, Any] | None:
        """A running job of ``job_ids``, or None once all have finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = [self.job(j) for j in job_ids]
            running = [j for j in jobs if j["status"] == "running"]
            if running:
                return running[0]
            if all(j["status"] in ("succeeded", "failed", "canceled") for j in jobs):
                return None
            time.sleep(0.2)
        raise AssertionError(f"no job of {job_ids} running after {timeout}s")

    def wait_running_past(self, job_id: str, step: int, timeout: float = 90) -> dict[str, Any]:
        """The job once it runs past ``step``, or once it has finished (not an error: a
        kill aimed at that point has nothing left to hit)."""
        return self.wait(
            job_id,
            lambda j: (
                (j["status"] == "running" and j["progress"]["step"] >= step)
                or j["status"] in ("succeeded", "failed", "canceled")
            ),
            timeout,
            f"running past {step}",
        )

    def wait_done(self, job_ids: list[str], timeout: float) -> list[dict[str, Any]]:
        return [
            self.wait(
                j, lambda j: j["status"] in ("succeeded", "failed", "canceled"), timeout, "finished"
            )
            for j in job_ids
        ]

    def steps_per_epoch(self, spec: dict[str, Any]) -> int:
        r = self.client.post("/v1/specs/validate", json={"spec": spec}, headers=self.auth)
        return int(r.json()["plan"]["steps_per_epoch"])

    def series(self, job_id: str, name: str) -> list[dict[str, Any]]:
        r = self.client.get(f"/v1/jobs/{job_id}/metrics", params={"name": name}, headers=self.auth)
        series = r.json()["series"]
        return list(series[0]["points"]) if series else []

    def assert_one_continuous_history(self, job_id: str, spec: dict[str, Any]) -> None:
        """Every epoch's metrics exactly once, at the epoch's last global step."""
        spe = self.steps_per_epoch(spec)
        for name in ("loss", "val_loss", "lr"):
            points = self.series(job_id, name)
            assert [p["epoch"] for p in points] == list(range(spec["epochs"])), (name, points)
            assert [p["step"] for p in points] == [(e + 1) * spe for e in range(spec["epochs"])], (
                name,
                points,
            )


def _alone() -> None:
    """A restart pulls the services from under every test running beside it: the tests that
    restart are marked ``restarts`` and run in a pytest process of their own (Makefile)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        raise RuntimeError("a test that restarts PostgreSQL or Redis must run alone")


def restart_redis() -> None:
    """Redis without persistence: every queued message is gone after this."""
    _alone()
    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    with suppress(redis.ConnectionError):
        r.shutdown(nosave=True)
    time.sleep(0.5)
    subprocess.run(REDIS_START, shell=True, check=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with suppress(redis.ConnectionError):
            if r.ping():
                return
        time.sleep(0.2)
    raise RuntimeError("redis did not come back")


def restart_postgres(down_seconds: float) -> None:
    _alone()
    cluster = subprocess.run(
        "ls /etc/postgresql", shell=True, capture_output=True, text=True, check=True
    ).stdout.split()[0]
    base = f"pg_ctlcluster --skip-systemctl-redirect {cluster} main"
    subprocess.run(f"{base} stop -m fast", shell=True, check=True)
    try:
        time.sleep(down_seconds)
    finally:
        subprocess.run(f"{base} start", shell=True, check=True)


def new_tag() -> str:
    return secrets.token_hex(3)

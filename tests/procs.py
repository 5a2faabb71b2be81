"""Real `trainforge worker` processes for the integration, fault and e2e tiers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from api.settings import Settings
from tests.conftest import REPO, free_port


def worker_env(settings: Settings, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    env.update(
        {
            "TRAINFORGE_DATABASE_URL": settings.resolved_database_url,
            "TRAINFORGE_BROKER_URL": settings.resolved_broker_url,
            "TRAINFORGE_QUEUE": settings.queue,
            "TRAINFORGE_HOME": str(home),
            "TRAINFORGE_HEARTBEAT_SECONDS": str(settings.heartbeat_seconds),
            "TRAINFORGE_LEASE_SECONDS": str(settings.lease_seconds),
            "TRAINFORGE_RECONCILE_SECONDS": str(settings.reconcile_seconds),
            "TRAINFORGE_REPUBLISH_AFTER_SECONDS": str(settings.republish_after_seconds),
            "TRAINFORGE_STALLED_LOCK_SECONDS": str(settings.stalled_lock_seconds),
            "TRAINFORGE_DB_IDLE_IN_TRANSACTION_SECONDS": str(
                settings.db_idle_in_transaction_seconds
            ),
            "TRAINFORGE_TORCH_THREADS": "1",  # several workers share this machine's cores
            **extra,
        }
    )
    return env


def start_worker(
    settings: Settings, home: Path, name: str, **extra: str
) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    log = (home / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "trainforge", "worker"],
        env=worker_env(settings, home, **extra),
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGCONT)
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_status(get: Any, job_id: str, statuses: set[str], timeout: float) -> dict[str, Any]:
    """Poll ``get(url)`` (a TestClient or httpx client method) until the job reaches a status."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = get(f"/v1/jobs/{job_id}")
        if isinstance(r, httpx.Response) and r.status_code == 200:
            job = r.json()
            if job["status"] in statuses:
                return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} is {job.get('status')} after {timeout}s: {job}")


@dataclass
class UpServer:
    """A `trainforge up` started as a user starts it."""

    proc: subprocess.Popen[bytes]
    base: str
    home: Path
    log: Path

    @property
    def key(self) -> str:
        return (self.home / "api-key").read_text().strip()


LOG_TAIL = 6000


def _tail(log: Path) -> str:
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_TAIL))
            return f.read().decode(errors="replace")
    except OSError as e:
        return f"(unreadable: {e})"


@contextmanager
def trainforge_up(tmp: Path, priority: int = 0, **extra_env: str) -> Iterator[UpServer]:
    """``extra_env``: TRAINFORGE_* settings, e.g. the URLs of PostgreSQL and Redis.

    ``priority``: a nice value for the whole server (API and workers), set on its process
    group at once (where the test may lower it: root), so that a test measuring the
    server's latency measures the server under its own load, not the other test processes
    the runner puts beside it on a small host."""
    port, home, log = free_port(), tmp / "tfhome", tmp / "up.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    env["TRAINFORGE_HOME"] = str(home)
    env.update(extra_env)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trainforge", "up", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its API and worker share the group: no orphans
        )
    if priority:
        # Every process of the group now; `up`'s children, forked later, inherit it.
        with suppress(PermissionError):
            os.setpriority(os.PRIO_PGRP, proc.pid, priority)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.3)
        else:
            raise AssertionError(log.read_text())
        yield UpServer(proc, base, home, log)
    except BaseException:
        # The server's side of a failure, in the test's report (CI keeps nothing else).
        print(f"--- the last {LOG_TAIL} bytes of {log}:\n{_tail(log)}")
        raise
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # as Ctrl-C: `up` stops its children
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group

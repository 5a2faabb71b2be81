"""Many watchers: 200 dashboards on one API process over PostgreSQL (issue 28, finding 13).

Each simulated dashboard holds one event stream (``GET /v1/jobs/{id}/events``) and polls
the job list (``GET /v1/jobs``) every 2 s on a keep-alive connection of its own, as the UI
does (a minimal asyncio HTTP/1.1 client: the load generator shares the machine); a prober
reads ``/healthz`` every 100 ms. Goals: the list's p99 <= 250 ms, /healthz p99 <= 100 ms;
the API process's CPU (utime + stime from /proc, its whole process group) over the
measured window is printed as a share of one core.

The server is ``trainforge api`` (one process) on a fresh PostgreSQL database and Redis;
40 jobs are submitted and a fake worker keeps 8 of them running, writing their progress
(which changes the list, and each stream's job gets progress events) every ``--tick``
seconds. Arms, alternating per round on the same server:

- ``etag``: the dashboards send the list's last ETag in If-None-Match (304 while unchanged);
- ``plain``: no If-None-Match (every poll is a full page, as before the ETag).

``--baseline TREE`` also runs the ``plain`` arm against another checkout's server (e.g.
/work/main before this change), after this tree's rounds.

    .venv/bin/python bench/many_watchers.py [--dashboards 200] [--seconds 30] [--rounds 1]
        [--no-streams] [--baseline TREE] [--env TRAINFORGE_API_MAX_CONCURRENT_REQUESTS=8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scratch_db import scratch_database
from submit_latency import group_cpu_seconds

REPO = Path(__file__).resolve().parents[1]
REDIS = "redis://127.0.0.1:6379/7"
# The polls start once the streams are open: 200 streams connecting in the same second
# (key, job, first page each) is a start-up burst, not the steady state being measured.
SETTLE_SECONDS = 5.0
SPEC = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 50}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def api_server(
    tree: Path, url: str, home: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    env.update(
        PYTHONPATH=str(tree), TRAINFORGE_HOME=str(home), TRAINFORGE_DATABASE_URL=url,
        TRAINFORGE_BROKER_URL=REDIS, TRAINFORGE_API_PROCESSES="1",
    )  # fmt: skip
    env.update(extra_env or {})
    log = (home / "api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainforge", "api", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            assert proc.poll() is None, (home / "api.log").read_text()
            time.sleep(0.3)
        yield proc, base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def prepare(url: str) -> str:
    """Migrate the database; a member key of a team of its own."""
    from api.db.migrate import upgrade
    from api.db.session import session_factory
    from api.teams.repository import create_api_key, get_or_create_team

    upgrade(url)
    with session_factory(url)() as s:
        _, key = create_api_key(s, get_or_create_team(s, "watchers"), "member")
        s.commit()
    return key


class FakeWorker(threading.Thread):
    """Keeps ``running`` jobs running, writing each one's progress every ``tick`` seconds."""

    def __init__(self, url: str, job_ids: list[str], tick: float) -> None:
        super().__init__(daemon=True)
        from api.db.session import session_factory
        from api.ledger import repository as repo

        self.factory = session_factory(url)
        self.tick, self.stop = tick, threading.Event()
        self.attempts: dict[str, int] = {}
        with self.factory() as s:
            for job_id in job_ids:
                attempt = repo.claim_job(s, job_id, 3600.0)
                assert attempt is not None
                self.attempts[job_id] = attempt
            s.commit()

    def run(self) -> None:
        from api.ledger.progress import record_progress

        step = 0
        while not self.stop.wait(self.tick):
            step += 1
            with self.factory() as s:
                for job_id, attempt in self.attempts.items():
                    record_progress(
                        s, job_id, attempt, epoch=step // 10, epochs=50, step=step, batch=step % 10,
                        steps_per_epoch=10, loss=1.0 / step,
                    )  # fmt: skip
                s.commit()


@dataclass
class Arm:
    list_ms: list[float] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    statuses: dict[int | str, int] = field(default_factory=dict)
    events: int = 0
    streams_open: int = 0

    def count(self, key: int | str) -> None:
        self.statuses[key] = self.statuses.get(key, 0) + 1


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Conn:
    """A minimal HTTP/1.1 keep-alive client (a browser's one connection per dashboard): the
    load generator must cost far less CPU than the server it loads (httpx's async client
    took ~0.9 of a core for 200 dashboards on this 2-core machine)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self.reader, self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, path: str, extra: str = "") -> tuple[int, dict[str, str]]:
        reader, writer = await self._open()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.head}{extra}\r\n".encode())
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = (line.partition(":") for line in head[1:] if line)
        return int(head[0].split()[1]), {k.lower(): v.strip() for k, _, v in fields}

    async def get(self, path: str, extra: str = "") -> tuple[int, dict[str, str], bytes]:
        try:
            status, headers = await self.send(path, extra)
            assert self.reader is not None
            length = int(headers.get("content-length", "0"))
            body = await self.reader.readexactly(length) if length else b""
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            raise
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body


async def watch(
    base: str, key: str, job_ids: list[str], dashboards: int, seconds: float, etag: bool,
    streams_on: bool = True,
) -> Arm:  # fmt: skip
    arm = Arm()
    host, port = base.removeprefix("http://").split(":")
    auth = {"Authorization": f"Bearer {key}"}
    end = time.monotonic() + seconds + (SETTLE_SECONDS if streams_on else 0.0)

    async def stream(job_id: str) -> None:
        conn = _Conn(host, int(port), auth)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            status, _ = await conn.send(f"/v1/jobs/{job_id}/events")
            arm.streams_open += status == 200
            assert conn.reader is not None
            while chunk := await conn.reader.read(65536):
                arm.events += chunk.count(b"\ndata:") + chunk.startswith(b"data:")
        conn.close()

    async def poll(rng: random.Random) -> None:
        conn = _Conn(host, int(port), auth)
        tag: str | None = None
        await asyncio.sleep(rng.uniform(0, 2))
        while time.monotonic() < end:
            started = time.perf_counter()
            extra = f"If-None-Match: {tag}\r\n" if etag and tag else ""
            try:
                status, headers, _ = await conn.get("/v1/jobs?limit=20", extra)
                if status == 200:
                    tag = headers.get("etag")
                arm.count(status)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                arm.count(type(exc).__name__)
            arm.list_ms.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(max(0.0, 2.0 - (time.perf_counter() - started)))
        conn.close()

    async def health() -> None:
        conn = _Conn(host, int(port), {})
        while time.monotonic() < end:
            started = time.perf_counter()
            try:
                status, _, _ = await conn.get("/healthz")
                arm.count(f"healthz {status}")
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                arm.count(f"healthz {type(exc).__name__}")
            arm.health_ms.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.1)
        conn.close()

    streams = [
        asyncio.create_task(stream(job_ids[i % len(job_ids)]))
        for i in range(dashboards if streams_on else 0)
    ]
    if streams:  # the streams open first, as dashboards that are already watching
        await asyncio.sleep(SETTLE_SECONDS)
    rngs = [random.Random(i) for i in range(dashboards)]
    await asyncio.gather(health(), *(poll(rng) for rng in rngs))
    for task in streams:
        task.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    return arm


def run_arm(
    label: str, proc: subprocess.Popen[bytes], base: str, key: str, job_ids: list[str],
    args: argparse.Namespace, etag: bool,
) -> None:  # fmt: skip
    cpu0, t0, client0 = group_cpu_seconds(proc.pid), time.monotonic(), time.process_time()
    arm = asyncio.run(
        watch(base, key, job_ids, args.dashboards, args.seconds, etag, not args.no_streams)
    )
    cpu1, t1, client1 = group_cpu_seconds(proc.pid), time.monotonic(), time.process_time()
    load = os.getloadavg()
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(arm.statuses.items(), key=str))
    print(f"[{label}] {args.dashboards} dashboards, {t1 - t0:.0f} s, streams opened "
          f"{arm.streams_open}, events {arm.events}")  # fmt: skip
    print(f"  list    n={len(arm.list_ms):5d} p50 {_pct(arm.list_ms, 0.5):7.1f} ms  p99 "
          f"{_pct(arm.list_ms, 0.99):7.1f} ms  max {max(arm.list_ms, default=0):7.1f} ms "
          f"(goal p99 250)")  # fmt: skip
    print(f"  healthz n={len(arm.health_ms):5d} p50 {_pct(arm.health_ms, 0.5):7.1f} ms  p99 "
          f"{_pct(arm.health_ms, 0.99):7.1f} ms  max {max(arm.health_ms, default=0):7.1f} ms "
          f"(goal p99 100)")  # fmt: skip
    print(f"  server CPU {cpu1 - cpu0:.1f} s = {(cpu1 - cpu0) / (t1 - t0):.2f} of a core; "
          f"client CPU {(client1 - client0) / (t1 - t0):.2f} of a core; load "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")  # fmt: skip
    print(f"  answers: {codes}")
    if arm.list_ms:
        print(f"  list mean {statistics.fmean(arm.list_ms):.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dashboards", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--tick", type=float, default=2.0, help="fake worker's progress interval")
    ap.add_argument("--baseline", type=Path, default=None)
    ap.add_argument("--no-streams", action="store_true", help="the polls alone (apportioning)")
    ap.add_argument("--env", action="append", default=[], help="TRAINFORGE_X=value for the API")
    args = ap.parse_args()
    print(f"uptime load before: {os.getloadavg()}")
    trees = [("this tree", REPO, True)]
    if args.baseline:
        trees.append((f"baseline {args.baseline}", args.baseline, False))
    for name, tree, has_etag in trees:
        with scratch_database("watchers") as url, tempfile.TemporaryDirectory() as tmp:
            key = prepare(url)
            extra = dict(e.split("=", 1) for e in args.env)
            with api_server(tree, url, Path(tmp), extra) as (proc, base):
                auth = {"Authorization": f"Bearer {key}"}
                job_ids = [
                    httpx.post(f"{base}/v1/jobs", json={"spec": SPEC}, headers=auth,
                               timeout=30).json()["id"]
                    for _ in range(40)
                ]  # fmt: skip
                worker = FakeWorker(url, job_ids[-8:], args.tick)  # the newest 8: on the page
                worker.start()
                try:
                    for _ in range(args.rounds):
                        arms = (
                            [("etag", True), ("plain", False)] if has_etag else [("plain", False)]
                        )
                        for arm, etag in arms:
                            run_arm(f"{name}: {arm}", proc, base, key, job_ids, args, etag)
                finally:
                    worker.stop.set()
                    worker.join()


if __name__ == "__main__":
    main()

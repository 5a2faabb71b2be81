"""Submit latency: how long a job waits before it runs, and what a tiny job costs end to end.

Servers, all started as a user starts them (``trainforge up``) and running side by side:

- ``embedded``: SQLite + the filesystem broker, as shipped;
- ``embedded-poll-1s``: the same with ``TRAINFORGE_BROKER_POLL_SECONDS=1`` (kombu's
  default polling, i.e. the behaviour before issue 16);
- ``pg+redis``: PostgreSQL (a fresh database) + Redis (a queue of its own).

Rounds are interleaved: each round submits one 1-epoch iris job to every server in turn
and watches it (GET every 10 ms) until it ends, so load changes hit all arms alike.
Per job:

- ``submit->running``: the job's ``started_at - created_at`` (server clocks: the API's
  insert to the worker's claim);
- ``running->ended``: ``finished_at - started_at`` (the worker's whole run of the job);
- ``submit->terminal``: the client's POST start to the first GET that shows it ended;
- ``overhead``: submit->terminal minus the epoch's training time (120 training rows /
  the ``samples_per_second`` metric).

Before the rounds, every server is left idle for ``--idle`` seconds and the CPU time of
its whole process group (``up``, its API, its worker) is read from /proc.

    .venv/bin/python bench/submit_latency.py [--rounds 20] [--idle 20] [--no-pg]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scratch_db import scratch_database  # bench/ is on sys.path, as the script's folder

from tests.procs import UpServer, trainforge_up

REDIS = "redis://127.0.0.1:6379/0"
IRIS = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 1, "seed": 0}
IRIS_TRAIN_ROWS = 120  # 150 rows, validation_split 0.2
TERMINAL = {"succeeded", "failed", "canceled"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """utime + stime of every live process in the group."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
                total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_one(server: UpServer, client: httpx.Client) -> dict[str, float]:
    auth = {"Authorization": f"Bearer {server.key}"}
    t0 = time.perf_counter()
    r = client.post(f"{server.base}/v1/jobs", json={"spec": IRIS}, headers=auth)
    r.raise_for_status()
    url = server.base + r.headers["location"]
    while True:
        job = client.get(url, headers=auth).json()
        if job["status"] in TERMINAL:
            break
        time.sleep(0.01)
    seen = time.perf_counter() - t0
    assert job["status"] == "succeeded", job
    sps = client.get(f"{url}/metrics", params={"name": "samples_per_second"}, headers=auth)
    train = IRIS_TRAIN_ROWS / sps.json()["series"][0]["points"][0]["value"]
    return {
        "submit->running": ts(job["started_at"]) - ts(job["created_at"]),
        "running->ended": ts(job["finished_at"]) - ts(job["started_at"]),
        "submit->terminal": seen,
        "overhead": seen - train,
        "train": train,
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    # A timeout's SIGTERM unwinds the servers and the database too (not leftover servers).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    queue = f"bench-latency-{secrets.token_hex(4)}"
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        arms: dict[str, dict[str, str]] = {
            "embedded": {},
            "embedded-poll-1s": {"TRAINFORGE_BROKER_POLL_SECONDS": "1"},
        }
        if not args.no_pg:
            arms["pg+redis"] = {
                "TRAINFORGE_DATABASE_URL": stack.enter_context(scratch_database("bench_latency")),
                "TRAINFORGE_BROKER_URL": REDIS,
                "TRAINFORGE_QUEUE": queue,
            }
        servers = {}
        for name, env in arms.items():
            (tmp / name).mkdir()
            servers[name] = stack.enter_context(trainforge_up(tmp / name, **env))
        client = stack.enter_context(httpx.Client(timeout=60))
        for server in servers.values():  # warm-up: first imports, first connections
            run_one(server, client)
        time.sleep(3)
        before = {name: group_cpu_seconds(s.proc.pid) for name, s in servers.items()}
        time.sleep(args.idle)
        idle = {
            name: (group_cpu_seconds(s.proc.pid) - before[name]) / args.idle
            for name, s in servers.items()
        }
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for _ in range(args.rounds):
            for name, server in servers.items():
                samples[name].append(run_one(server, client))
    print(f"{args.rounds} rounds, idle window {args.idle:.0f} s; load: {os.getloadavg()}")
    print(f"{'server':18} {'idle CPU':>9}  measure            p10      p50      p90      max")
    for name, rows in samples.items():
        keys = ("submit->running", "running->ended", "submit->terminal", "overhead", "train")
        for i, key in enumerate(keys):
            values = [row[key] * 1000 for row in rows]
            head = f"{name:18} {idle[name] * 100:8.2f}%" if i == 0 else " " * 28
            print(
                f"{head}  {key:16} {pct(values, 0.1):6.0f}ms {statistics.median(values):6.0f}ms "
                f"{pct(values, 0.9):6.0f}ms {max(values):6.0f}ms"
            )


if __name__ == "__main__":
    main()

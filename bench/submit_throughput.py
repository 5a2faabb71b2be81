"""Submit throughput: POST /v1/jobs against GET /healthz, same server, same client.

One ``trainforge api`` process (uvicorn, one worker process, no Celery worker: jobs stay
queued) on SQLite, or PostgreSQL with ``--pg``. The client runs ``--concurrency`` threads
(8), each with its own keep-alive connection. Phases of ``--seconds`` alternate between
``healthz`` (GET /healthz) and ``submit`` (POST /v1/jobs, a 1-epoch iris spec), and the
ratio submit/healthz is taken per adjacent pair, so load drift hits both; printed: each
arm's median requests/s and the median ratio (goal >= 0.5).

``--before-tree DIR`` also starts a server from another checkout (e.g. the commit before
issue 16: ``git archive <commit> | tar -x -C DIR``), same venv, own home, and alternates
its phases with the current tree's: the before/after in one run.

    .venv/bin/python bench/submit_throughput.py [--rounds 6] [--seconds 3] [--pg]
        [--before-tree /tmp/old] [--processes 1,2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from scratch_db import scratch_database  # bench/ is on sys.path, as the script's folder

REPO = Path(__file__).resolve().parents[1]
IRIS = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 1}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def api_server(
    tree: Path, home: Path, database_url: str | None, processes: int = 1
) -> Iterator[tuple[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
    env.update(TRAINFORGE_HOME=str(home), PYTHONPATH=str(tree))
    if database_url:
        env["TRAINFORGE_DATABASE_URL"] = database_url
    cli = [sys.executable, "-m", "trainforge"]

    def run(*args: str) -> str:
        out = subprocess.run([*cli, *args], cwd=tree, env=env, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(out.stderr)
        return out.stdout

    run("db", "upgrade")
    run("admin", "create-team", "bench")
    key = run("admin", "create-key", "--team", "bench", "--role", "member").strip().split()[-1]
    port = free_port()
    proc = subprocess.Popen(
        [*cli, "api", "--host", "127.0.0.1", "--port", str(port)]
        + (["--processes", str(processes)] if processes > 1 else []),
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        yield base, key
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def phase(
    base: str, key: str, arm: str, seconds: float, concurrency: int, read_path: str = ""
) -> float:
    """Requests per second over the phase, all threads together."""
    counts = [0] * concurrency
    errors: list[str] = []
    start = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        with httpx.Client(base_url=base, headers=_auth(key)) as c:
            c.get("/healthz")  # connect before the clock starts
            start.wait()
            while time.perf_counter() < stop_at[0]:
                if arm == "healthz":
                    r = c.get("/healthz")
                elif arm == "read":
                    r = c.get(read_path)
                else:
                    r = c.post("/v1/jobs", json={"spec": IRIS})
                if r.status_code not in (200, 201):
                    errors.append(f"{r.status_code} {r.text[:200]}")
                    return
                counts[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 3600
    start.wait()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return sum(counts) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pg", action="store_true")
    parser.add_argument("--before-tree", type=Path)
    parser.add_argument(
        "--read-arm",
        action="store_true",
        help="also GET /v1/jobs/{id}: an authenticated read through the same stack, to put "
        "a submit's cost beside (submit/read)",
    )
    parser.add_argument(
        "--processes",
        default="1",
        help="API process counts of the current tree, comma-separated: one server each, "
        "their phases interleaved (e.g. 1,2)",
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    trees = {("after" if n == 1 else f"after-{n}p"): (REPO, n) for n in counts}
    if args.before_tree:
        trees["before"] = (args.before_tree.resolve(), 1)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        servers = {}
        for name, (tree, processes) in trees.items():
            url = stack.enter_context(scratch_database("bench_submit")) if args.pg else None
            servers[name] = stack.enter_context(api_server(tree, tmp / name, url, processes))
        rates: dict[tuple[str, str], list[float]] = {}
        read_paths = {}
        for name, (base, key) in servers.items():  # warm-up; the job the read arm reads
            phase(base, key, "submit", 1.0, args.concurrency)
            job = httpx.post(f"{base}/v1/jobs", json={"spec": IRIS}, headers=_auth(key))
            read_paths[name] = job.headers["location"]
        arms = ["healthz", "submit"] + (["read"] if args.read_arm else [])
        for r in range(args.rounds):
            for name, (base, key) in servers.items():
                for arm in arms[r % len(arms) :] + arms[: r % len(arms)]:  # rotated
                    rate = phase(base, key, arm, args.seconds, args.concurrency, read_paths[name])
                    rates.setdefault((name, arm), []).append(rate)
    store = "PostgreSQL" if args.pg else "SQLite"
    print(
        f"{store}, {args.concurrency} concurrent, {args.rounds} rounds x {args.seconds:.0f} s "
        f"phases; load at the end: {os.getloadavg()}"
    )
    for name in servers:
        health, submit = rates[(name, "healthz")], rates[(name, "submit")]
        ratios = [s / h for s, h in zip(submit, health, strict=True)]
        print(
            f"{name:8} healthz {statistics.median(health):7.0f}/s  submit "
            f"{statistics.median(submit):6.0f}/s  submit/healthz median "
            f"{statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f})"
        )
        if args.read_arm:
            read = rates[(name, "read")]
            per_read = [s / g for s, g in zip(submit, read, strict=True)]
            print(
                f"{'':8} read    {statistics.median(read):7.0f}/s  submit/read median "
                f"{statistics.median(per_read):.2f} (range {min(per_read):.2f}-"
                f"{max(per_read):.2f})"
            )


if __name__ == "__main__":
    main()

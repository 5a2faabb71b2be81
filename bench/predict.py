"""Predictions per second: through the API (HTTP, JSON) vs ONNX Runtime in-process, same model.

A small iris job is trained and exported by the worker code in-process (SQLite in a
temporary home); ``trainforge api`` then serves it from a separate process. For batches
of 1 and 256 instances the harness times

- ``http``: ``POST /v1/jobs/{id}/predict`` with rows as JSON lists, one keep-alive
  connection, requests one after another (the API parses, validates, converts, runs
  the cached ONNX Runtime session, answers label + probabilities per row);
- ``ort``: ``InferenceSession.run`` on a float32 array of the same rows, the session
  built with the API's options (one intra-op thread);

and prints predictions/s of each and their ratio (ORT / HTTP: the API's overhead
factor). Medians over ``--repeats`` rounds, arms interleaved so load drift on a shared
machine hits both.

    .venv/bin/python bench/predict.py [--repeats 5] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort

from api.db.migrate import upgrade
from api.db.session import session_factory
from api.ledger import repository as jobs_repo
from api.predict import repository as model_exports
from api.settings import Settings
from api.teams.repository import DEFAULT_TEAM, create_api_key, get_or_create_team
from ml.spec import SPEC_VERSION, JobSpec
from worker.runner import run_job

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rate(fn: Callable[[], None], per_call: int, seconds: float) -> float:
    """Predictions per second of ``fn`` (``per_call`` predictions each), over ``seconds``."""
    fn()  # warm-up
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        calls += 1
    return calls * per_call / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings = Settings(home=home, unsafe_no_republish=True)
        settings.ensure_home()
        upgrade(settings.resolved_database_url)
        factory = session_factory(settings.resolved_database_url)
        with factory() as s:
            team = get_or_create_team(s, DEFAULT_TEAM)
            _, key = create_api_key(s, team, "member")
            spec = JobSpec.model_validate(
                {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 5}
            )
            job_id = jobs_repo.create_job(
                s, team_id=team.id, key_id=None, name="bench", spec=spec.model_dump(mode="json"),
                spec_version=SPEC_VERSION, queue="trainforge", epochs=spec.epochs,
                max_restarts=0,
            ).id  # fmt: skip
            s.commit()
        run_job(job_id, settings)
        with factory() as s:
            onnx = model_exports.read_file(s, job_id, "onnx")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINFORGE_")}
        env["TRAINFORGE_HOME"] = str(home)
        api = subprocess.Popen(
            [sys.executable, "-m", "trainforge", "api", "--port", str(port)],
            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            for _ in range(300):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
            rng = np.random.default_rng(0)
            results: dict[tuple[str, int], list[float]] = {}
            for _ in range(args.repeats):
                for n in (1, 256):
                    rows = rng.uniform(0.1, 7.0, (n, 4)).astype(np.float32)
                    body = {"instances": rows.tolist()}

                    def http_call(body: dict[str, object] = body) -> None:
                        r = client.post(f"/v1/jobs/{job_id}/predict", json=body)
                        r.raise_for_status()

                    def ort_call(rows: np.ndarray = rows) -> None:
                        session.run(None, {"input": rows})

                    results.setdefault(("http", n), []).append(rate(http_call, n, args.seconds))
                    results.setdefault(("ort", n), []).append(rate(ort_call, n, args.seconds))
        finally:
            api.terminate()
            api.wait(timeout=30)
    print(f"{'batch':>6} {'http pred/s':>12} {'ort pred/s':>12} {'ort/http':>9}")
    for n in (1, 256):
        h = statistics.median(results[("http", n)])
        o = statistics.median(results[("ort", n)])
        print(f"{n:>6} {h:>12.0f} {o:>12.0f} {o / h:>8.1f}x")


if __name__ == "__main__":
    main()

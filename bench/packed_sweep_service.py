"""Packed sweeps end to end through the service (issue 26): the 27-point grid of
``bench/sweep_efficiency.py`` with ASHA, ``execution.pack: off`` against ``auto``.

Each arm: a fresh SQLite store, the API in-process (``POST /v1/sweeps``), and the
worker's own code (``worker.runner.run_job``) running the sweep's queued trials until
none is left -- one worker, one torch thread. Arms are interleaved (off, auto, off,
auto, ...); prints each arm's wall time, best trial and epochs, then the ratio
off / auto (goal >= 3) and whether the best trial is the same.

The packed arm runs this tree's ``ml/pack.py`` (the vectorised engine, ``ml.pack_net``
and ``ml.pack_optim``); a member's end is recorded as it leaves its pack.

    .venv/bin/python bench/packed_sweep_service.py [--epochs 27] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.db.migrate import upgrade
from api.db.session import session_factory
from api.ledger.models import Job
from api.settings import Settings
from api.teams.repository import DEFAULT_TEAM, create_api_key, get_or_create_team
from worker.runner import run_job

PARAMETERS = {  # bench/sweep_efficiency.py's grid
    "optimizer.lr": {"kind": "grid", "values": [0.0003, 0.003, 0.03]},
    "regularization.dropout": {"kind": "grid", "values": [0.0, 0.25, 0.5]},
    "model.hidden_units": {"kind": "grid", "values": [[32], [128], [512]]},
}


class _NoBroker:
    """The doorbell is not needed: the loop below runs every queued trial."""

    def publish(self, job_id: str, queue: str) -> None: ...

    def ping(self) -> None: ...


def _sweep(epochs: int, pack: str) -> dict[str, Any]:
    spec = {
        "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 32},
        "model": {"kind": "mlp", "hidden_units": [128]},
        "optimizer": {"kind": "adam"},
        "checkpointing": {"keep_best": 0},
        "epochs": epochs,
        "seed": 0,
        "resources": {"device": "cpu"},
    }
    return {
        "name": f"pack-{pack}",
        "spec": spec,
        "parameters": PARAMETERS,
        "algorithm": {"kind": "grid"},
        "objective": {"metric": "val_accuracy"},
        "max_concurrent_trials": 1,  # one worker
        "early_termination": {"kind": "asha", "grace_epochs": 1, "reduction_factor": 3},
        "execution": {"pack": pack, "max_pack": 64},
    }


def run_arm(epochs: int, pack: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), torch_threads=1)
        settings.ensure_home()
        upgrade(settings.resolved_database_url)
        factory = session_factory(settings.resolved_database_url)
        with factory() as s:
            _, key = create_api_key(s, get_or_create_team(s, DEFAULT_TEAM), "bench")
            s.commit()
        app = create_app(settings, queue=_NoBroker())
        with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
            start = time.perf_counter()
            r = client.post("/v1/sweeps", json=_sweep(epochs, pack))
            assert r.status_code == 201, r.text
            sweep_id = r.json()["id"]
            while True:
                with factory() as s:
                    queued = s.scalar(
                        select(Job.id)
                        .where(Job.sweep_id == sweep_id, Job.status == "queued")
                        .order_by(Job.trial_number)
                        .limit(1)
                    )
                if queued is None:
                    break
                run_job(queued, settings)
            seconds = time.perf_counter() - start
            sweep = client.get(f"/v1/sweeps/{sweep_id}").json()
    best = sweep["best"] or {}
    return {
        "seconds": seconds,
        "status": sweep["status"],
        "best": (best.get("trial_number"), best.get("objective")),
        "epochs": sweep["epochs_trained"],
        "packs": len(sweep["packs"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=27)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    import ml.pack

    print(f"ml/pack.py: {(ml.pack.__doc__ or '').strip().splitlines()[0]}")
    print(f"load before: {os.getloadavg()}")
    times: dict[str, list[float]] = {"off": [], "auto": []}
    bests: dict[str, set[Any]] = {"off": set(), "auto": set()}
    for _ in range(args.repeats):
        for pack in ("off", "auto"):
            out = run_arm(args.epochs, pack)
            times[pack].append(out["seconds"])
            bests[pack].add(out["best"][0])
            print(f"  pack {pack:4}: {out}")
    print(f"load after: {os.getloadavg()}")
    off, auto = statistics.median(times["off"]), statistics.median(times["auto"])
    print(f"27-point grid, ASHA, {args.epochs} epochs: off {off:.1f} s, auto {auto:.1f} s")
    print(f"wall time off / auto: {off / auto:.2f}x (goal >= 3)")
    same = bests["off"] == bests["auto"] and len(bests["off"]) == 1
    print(f"best trial off {sorted(bests['off'])}, auto {sorted(bests['auto'])}: same {same}")


if __name__ == "__main__":
    main()

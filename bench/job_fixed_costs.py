"""Per-job fixed costs in the worker, for a tiny job (1 epoch of iris, ~0.1 s of training).

``worker.runner.run_job`` in this process on a SQLite file, as the worker runs a job
(claim, lease, metrics, checkpoints, model export, final status), with each phase timed
by wrapping the function that does it:

- ``claim``: the claim transaction (``worker.runner._claim``);
- ``data``: loading the builtin dataset and preparing it (split, normalization, tensors:
  ``ml.engine.load_dataset`` + ``ml.engine.prepare``);
- ``checkpoint``: the final checkpoint (``ml.engine._Run.save``: pack + store);
- ``export``: the ONNX model export with its parity check (``worker.runner.export_job``);
- ``other``: the rest (the epoch itself, metric and log writes, the final transaction).

Arms, interleaved job by job: ``cached`` (as shipped: builtin datasets and splits cached
per process) and ``cold`` (the caches cleared before each job: what every job paid
before issue 16). The first job of each arm is warm-up.

    .venv/bin/python bench/job_fixed_costs.py [--jobs 15]
"""

from __future__ import annotations

import argparse
import functools
import logging
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.worker.helpers

from api.db.migrate import upgrade
from api.db.session import session_factory
from api.settings import Settings
from ml import data as ml_data
from ml import engine
from tests.worker.helpers import insert_job
from worker import runner

PHASES = ("claim", "data", "checkpoint", "export")
IRIS = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 1, "seed": 0}
spent: dict[str, float] = defaultdict(float)


def timed(phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[phase] += time.perf_counter() - t0

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=15)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    runner._claim = timed("claim", runner._claim)
    runner.export_job = timed("export", runner.export_job)  # type: ignore[attr-defined]
    engine.load_dataset = timed("data", engine.load_dataset)  # type: ignore[attr-defined]
    engine.prepare = timed("data", engine.prepare)  # type: ignore[attr-defined]
    engine._Run.save = timed("checkpoint", engine._Run.save)  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp), torch_threads=1)
        settings.ensure_home()
        upgrade(settings.resolved_database_url)
        factory = session_factory(settings.resolved_database_url)
        rows: dict[str, list[dict[str, float]]] = {"cached": [], "cold": []}
        for i in range(args.jobs + 1):
            for arm in rows:
                if arm == "cold":
                    ml_data._named_builtin.cache_clear()
                    ml_data._split.cache_clear()
                with factory() as s:
                    job_id = insert_job(s, IRIS)
                    s.commit()
                spent.clear()
                t0 = time.perf_counter()
                outcome = runner.run_job(job_id, settings)
                total = time.perf_counter() - t0
                assert "succeeded" in outcome, outcome
                if i:
                    row = {p: spent[p] for p in PHASES}
                    row["other"] = total - sum(row.values())
                    row["total"] = total
                    rows[arm].append(row)
    print(f"{args.jobs} jobs per arm (1 epoch of iris), medians in ms")
    print(f"{'arm':7}" + "".join(f"{p:>11}" for p in (*PHASES, "other", "total")))
    for arm, measured in rows.items():
        cells = [
            statistics.median(r[p] for r in measured) * 1000 for p in (*PHASES, "other", "total")
        ]
        print(f"{arm:7}" + "".join(f"{c:11.1f}" for c in cells))


if __name__ == "__main__":
    main()

"""Where a second CPU thread starts to pay: digits MLPs of growing step size, 1 vs 2 threads.

Each arm is a fresh process (torch's thread pool is fixed once used); the arms alternate
in order across ``--repeats``. Printed per model: the step's forward multiply-adds
(``ml.architecture.multiply_adds_per_sample`` x batch size, what ``worker.torch_threads``
compares with ``SMALL_STEP``), each arm's median epoch time and the ratio 2t/1t.

    .venv/bin/python bench/thread_crossover.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CELLS = [([128], 32), ([256], 64), ([512], 64), ([1024], 128), ([256, 256], 128), ([512, 512], 128)]
CHILD = """
import itertools, json, statistics, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
from ml.architecture import multiply_adds_per_sample
from ml.checks import builtin_info
from ml.engine import train
from ml.spec import JobSpec
hidden, batch = json.loads(sys.argv[2]), int(sys.argv[3])
spec = JobSpec.model_validate({
    "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": batch},
    "model": {"kind": "mlp", "hidden_units": hidden},
    "optimizer": {"kind": "adam", "lr": 1e-3}, "epochs": 4, "seed": 0,
})
stamps = []
def progress(epochs, _step):
    if epochs > len(stamps) - 1:
        stamps.append(time.perf_counter())
stamps.append(time.perf_counter())
train(spec, on_progress=progress)
epoch = statistics.median(b - a for a, b in itertools.pairwise(stamps[1:]))
work = multiply_adds_per_sample(spec, builtin_info(spec.dataset.source)) * batch
print(json.dumps({"epoch": epoch, "work": work}))
"""


def run(threads: int, hidden: list[int], batch: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", CHILD, str(threads), json.dumps(hidden), str(batch)]
    out = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    epochs: dict[tuple[str, int], dict[int, list[float]]] = {}
    work: dict[tuple[str, int], float] = {}
    for rep in range(args.repeats):
        for hidden, batch in CELLS:
            for threads in (1, 2) if rep % 2 == 0 else (2, 1):
                result = run(threads, hidden, batch)
                cell = (str(hidden), batch)
                epochs.setdefault(cell, {}).setdefault(threads, []).append(result["epoch"])
                work[cell] = result["work"]
    print(f"load at the end: {os.getloadavg()}")
    print("hidden       batch  step work   1 thread  2 threads  2t/1t")
    for cell, arms in epochs.items():
        one, two = statistics.median(arms[1]), statistics.median(arms[2])
        print(
            f"{cell[0]:12} {cell[1]:5} {work[cell] / 1e6:8.2f} M {one * 1e3:8.1f} ms "
            f"{two * 1e3:7.1f} ms   {two / one:.2f}"
        )


if __name__ == "__main__":
    main()

"""CPU threads per job: the worker's default against fixed thread counts, idle and loaded.

Arms (each run is a fresh process, since OpenMP's wait policy is fixed when torch loads):

- ``torch``: PyTorch's own default (one thread per core, spinning OpenMP) -- what a job
  got before issue 16 when ``TRAINFORGE_TORCH_THREADS`` was unset;
- ``1``, ``2``: ``torch.set_num_threads(n)`` with the default (spinning) wait policy, as
  ``TRAINFORGE_TORCH_THREADS=n`` did before;
- ``auto``: what the worker does now with ``TRAINFORGE_TORCH_THREADS`` unset
  (``worker.torch_threads``: one thread for a small step, else as many as cores not busy
  with other processes, measured just before the job);
- ``auto-passive``: the same with ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep
  instead of spinning), a variant that was considered.

Hosts: ``idle`` (nothing else of ours) and ``loaded`` (a second process spinning on one
core for the whole run). Models: the README's digits MLP ([128], batch 32) and a digits
CNN ([32, 64], batch 128). Every (host, model) cell runs all arms back to back, in a
rotating order, ``--repeats`` times. Throughput: training samples / the median epoch
wall time (epoch 1 is warm-up). Reported: each arm's median samples/s and its time
relative to the best arm of the cell (goal: ``auto`` <= 1.2x).

    .venv/bin/python bench/threads.py [--repeats 3] [--epochs 4] [--arms torch,1,2,auto]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

ARMS = ("torch", "1", "2", "auto", "auto-passive")
MODELS = {
    "mlp": ({"kind": "mlp", "hidden_units": [128], "activation": "relu"}, 32),
    "cnn": ({"kind": "cnn", "channels": [32, 64]}, 128),
}


def child(arm: str, model: str, epochs: int) -> None:
    if arm == "auto-passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # before torch loads OpenMP
    import torch

    from ml.architecture import multiply_adds_per_sample
    from ml.checks import builtin_info
    from ml.engine import train
    from ml.spec import BuiltinSource, JobSpec
    from worker import torch_threads as threads

    layers, batch = MODELS[model]
    spec = JobSpec.model_validate(
        {
            "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": batch},
            "model": layers,
            "optimizer": {"kind": "adam", "lr": 1e-3},
            "epochs": epochs,
            "seed": 0,
        }
    )
    why = "torch default"
    if arm.startswith("auto"):  # as the worker chooses (worker/runner.py)
        assert isinstance(spec.dataset.source, BuiltinSource)
        work = multiply_adds_per_sample(spec, builtin_info(spec.dataset.source)) * batch
        choice = threads.choose(None, threads.others_busy_now(0.5), step_work=work)
        torch.set_num_threads(choice.threads)
        why = choice.why
    elif arm != "torch":
        torch.set_num_threads(int(arm))
    stamps: list[float] = []

    def progress(epochs_completed: int, _step: int) -> None:
        if epochs_completed > len(stamps) - 1:
            stamps.append(time.perf_counter())

    stamps.append(time.perf_counter())
    train(spec, on_progress=progress)
    epoch_times = [b - a for a, b in itertools.pairwise(stamps[1:])]
    epoch = statistics.median(epoch_times)
    print(json.dumps({"threads": torch.get_num_threads(), "why": why, "epoch": epoch}))


def run(arm: str, model: str, epochs: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", arm, model, str(epochs)],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--arms", default=",".join(ARMS), help="a subset, comma-separated")
    args = parser.parse_args()
    arms = tuple(args.arms.split(","))
    n_train = 1437  # digits: 1797 rows, validation_split 0.2
    results: dict[tuple[str, str, str], list[float]] = {}
    threads_seen: dict[tuple[str, str, str], set[int]] = {}
    for rep in range(args.repeats):
        for host in ("idle", "loaded"):
            hog = None
            if host == "loaded":
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(2)  # the busy meter's window sees it
            try:
                for model in MODELS:
                    order = arms[rep % len(arms) :] + arms[: rep % len(arms)]
                    for arm in order:
                        r = run(arm, model, args.epochs)
                        results.setdefault((host, model, arm), []).append(n_train / r["epoch"])
                        threads_seen.setdefault((host, model, arm), set()).add(int(r["threads"]))
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    print(f"{args.repeats} repeats x {args.epochs} epochs; load at the end: {os.getloadavg()}")
    print(f"{'host':7} {'model':5} {'arm':6} {'threads':>7} {'samples/s':>10} {'time/best':>9}")
    for host in ("idle", "loaded"):
        for model in MODELS:
            medians = {arm: statistics.median(results[(host, model, arm)]) for arm in arms}
            best = max(medians.values())
            for arm in arms:
                seen = ",".join(str(t) for t in sorted(threads_seen[(host, model, arm)]))
                print(
                    f"{host:7} {model:5} {arm:6} {seen:>7} {medians[arm]:10.0f} "
                    f"{best / medians[arm]:8.2f}x"
                )


if __name__ == "__main__":
    main()

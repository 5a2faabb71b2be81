"""Packed sweeps (issue 26): trials/s of the same set of trials trained packed
(``ml.pack.train_pack``) against one after another (``ml.engine.train`` each, what a worker
does with ``pack: off``), in one process, one intra-op thread.

Cases (goals of issue 26):

- ``mlp64``: 64 digits-MLP trials (the default mlp, [128, 64], batch 32, Adam), a grid of
  8 learning rates x 8 weight decays (goal >= 8x);
- ``mlp16``: 16 of those trials, 4 x 4 (goal >= 3x);
- ``cnn16``: 16 trials of a small CNN on digits (cnn [16, 32], batch norm, batch 32,
  Adam), 4 lr x 4 weight decays (goal >= 2x);

Every trial of both arms has an in-memory metric sink and checkpoint sink (a checkpoint per
epoch, as a worker saves them; ``--no-checkpoints`` leaves them out), the same seed, so both
arms do the same work.

Arms are interleaved (solo, packed, solo, packed, ...) ``--repeats`` times; each arm's
figure is the median time of its runs, and the ratio is solo / packed: in process CPU time
(robust on a shared machine: time spent descheduled does not count; with one thread it is
the work done) and in wall time (on a GPU, read the wall time). The packed
arm's members are checked against the solo arm's: the same final val_accuracy within the
documented tolerance (a wrong fast result is no result).

    .venv/bin/python bench/packed_sweeps.py [--cases mlp64 mlp16 cnn16] [--epochs 3]
        [--repeats 3] [--threads 1] [--device cuda]

With ``--device cuda`` both arms train on the GPU (each clock reading waits for it).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

import torch

from ml.data import load_dataset
from ml.engine import TrainResult, train
from ml.pack import PackMember, train_pack
from ml.sinks import MemoryCheckpointSink, MemoryMetricSink
from ml.spec import JobSpec

LRS = [3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 7e-3, 1e-2]
WDS = [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
CASES = {
    "mlp64": ({"kind": "mlp"}, 8, 8),
    "mlp16": ({"kind": "mlp"}, 4, 4),
    "cnn16": ({"kind": "cnn", "channels": [16, 32]}, 4, 4),
}
GOALS = {"mlp64": 8.0, "mlp16": 3.0, "cnn16": 2.0}


def specs(case: str, epochs: int, device: str) -> list[JobSpec]:
    model, n_lr, n_wd = CASES[case]
    lrs = LRS[:: len(LRS) // n_lr][:n_lr]
    wds = WDS[:: len(WDS) // n_wd][:n_wd]
    return [
        JobSpec.model_validate(
            {
                "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 32},
                "model": model,
                "epochs": epochs,
                "optimizer": {"kind": "adam", "lr": lr},
                "regularization": {"weight_decay": wd},
                "resources": {"device": device},
            }
        )
        for lr, wd in itertools.product(lrs, wds)
    ]


def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        torch.cuda.synchronize()


Clock = tuple[float, float]  # (process CPU time, wall time)


def clock() -> Clock:
    sync()
    return time.process_time(), time.perf_counter()


def since(start: Clock) -> Clock:
    now = clock()
    return now[0] - start[0], now[1] - start[1]


CHECKPOINTS = True  # --no-checkpoints: no checkpoint sink in either arm


def checkpoint_sink() -> MemoryCheckpointSink | None:
    return MemoryCheckpointSink() if CHECKPOINTS else None


def solo_arm(trials: list[JobSpec]) -> tuple[Clock, list[float]]:
    loaded = load_dataset(trials[0])
    start = clock()
    accs = []
    for spec in trials:
        r = train(spec, metrics=MemoryMetricSink(), checkpoints=checkpoint_sink(), dataset=loaded)
        accs.append(r.final_metrics["val_accuracy"])
    return since(start), accs


def packed_arm(trials: list[JobSpec]) -> tuple[Clock, list[float]]:
    loaded = load_dataset(trials[0])
    start = clock()
    members = [
        PackMember(f"t{i}", spec, metrics=MemoryMetricSink(), checkpoints=checkpoint_sink())
        for i, spec in enumerate(trials)
    ]
    results = train_pack(members, dataset=loaded)
    elapsed = since(start)
    accs = []
    for r in results:
        if not isinstance(r, TrainResult):
            raise RuntimeError(f"a packed trial failed: {r!r}")
        accs.append(r.final_metrics["val_accuracy"])
    return elapsed, accs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--no-checkpoints", action="store_true")
    args = parser.parse_args()
    global CHECKPOINTS
    CHECKPOINTS = not args.no_checkpoints
    torch.set_num_threads(args.threads)
    setup = f"{args.threads} thread(s), device {args.device}, checkpoints "
    setup += "on" if CHECKPOINTS else "off"
    print(f"torch {torch.__version__}, {setup}, load average {os.getloadavg()}")
    for case in args.cases:
        trials = specs(case, args.epochs, args.device)
        solo_t: list[Clock] = []
        pack_t: list[Clock] = []
        worst = 0.0
        for _ in range(args.repeats):
            t, solo_acc = solo_arm(trials)
            solo_t.append(t)
            t, pack_acc = packed_arm(trials)
            pack_t.append(t)
            worst = max(worst, max(abs(a - b) for a, b in zip(solo_acc, pack_acc, strict=True)))
        n = len(trials)
        for k, kind in enumerate(("cpu", "wall")):
            s = statistics.median(t[k] for t in solo_t)
            p = statistics.median(t[k] for t in pack_t)
            print(
                f"{case:6s} {n:3d} trials x {args.epochs} epochs, {kind:4s} time: solo "
                f"{n / s:7.2f} trials/s ({s:6.2f} s), packed {n / p:7.2f} trials/s "
                f"({p:6.2f} s): {s / p:5.2f}x (goal {GOALS[case]}x)"
            )
        print(f"{case:6s} max |val_accuracy solo - packed| over the trials: {worst:.4f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

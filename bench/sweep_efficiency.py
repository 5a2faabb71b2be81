"""Sweep efficiency: a full grid against the same grid with ASHA early termination.

Digits, an MLP, a grid of 27 points (optimizer.lr x regularization.dropout x
model.hidden_units width), each trial ``--epochs`` epochs, objective the best
epoch's val_accuracy. Both runs are in-process through ``ml.train``; the ASHA
run passes the engine a pruner (ml.pruning.EpochPruner) that asks exactly what
the worker asks at each epoch end -- ``api.sweeps.sampling.should_prune`` over
the trials so far -- with the trials run one after another in grid order (the
hardest case for asynchronous successive halving: no trial waits for a rung to
fill, the first trials are promoted on little evidence). Grid points and their
specs come from ``api.sweeps.space``, as the service builds them.

Prints, for each run, the best objective and the epochs trained; goal: ASHA
within 0.5 percentage points of the full grid's best with at most 40 % of its
epochs.

    .venv/bin/python bench/sweep_efficiency.py [--epochs 27] [--grace 1] [--rf 3]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from typing import Any

import torch

from api.sweeps import sampling
from api.sweeps.schemas import AshaTermination, GridParameter
from api.sweeps.space import grid_point, grid_size, trial_spec
from ml.engine import train
from ml.sinks import MemoryMetricSink
from ml.spec import JobSpec

PARAMETERS = {
    "optimizer.lr": GridParameter(values=[0.0003, 0.003, 0.03]),
    "regularization.dropout": GridParameter(values=[0.0, 0.25, 0.5]),
    "model.hidden_units": GridParameter(values=[[32], [128], [512]]),
}
METRIC = "val_accuracy"


class _AshaPruner:
    """The worker's question, in memory: the earlier trials are ``history``."""

    def __init__(
        self, asha: AshaTermination, history: list[sampling.TrialRecord], me: sampling.TrialRecord
    ) -> None:
        self.asha, self.history, self.me = asha, history, me

    def should_prune(self, epoch: int, values: Mapping[str, float]) -> bool:
        self.me.intermediate[epoch + 1] = float(values[METRIC])
        return sampling.should_prune(self.asha, PARAMETERS, "max", self.history, self.me)


def run(base: dict[str, Any], asha: AshaTermination | None) -> tuple[float, int, list[Any]]:
    history: list[sampling.TrialRecord] = []
    rows = []
    for number in range(grid_size(PARAMETERS)):
        params = grid_point(PARAMETERS, number)
        spec = trial_spec(base, params)
        me = sampling.TrialRecord(number, params, "running")
        pruner = _AshaPruner(asha, history, me) if asha else None
        sink = MemoryMetricSink()
        result = train(spec, metrics=sink, pruner=pruner)
        values = sink.series(METRIC)
        me.intermediate = {i + 1: v for i, v in enumerate(values)}
        me.value = max(values)
        me.phase = "pruned" if result.status_reason == "pruned" else "complete"
        history.append(me)
        rows.append(
            (number, params, result.epochs_completed, me.value, result.status_reason, values)
        )
    best = max(r.value or 0.0 for r in history)
    return best, sum(r[2] for r in rows), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=27)
    parser.add_argument("--grace", type=int, default=1)
    parser.add_argument("--rf", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save-curves", help="Write each full-grid trial's curve (JSON).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = JobSpec.model_validate(
        {
            "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 32},
            "model": {"kind": "mlp", "hidden_units": [128]},
            "optimizer": {"kind": "adam"},
            "checkpointing": {"keep_best": 0},
            "epochs": args.epochs,
            "seed": 0,
            "resources": {"device": "cpu"},
        }
    ).model_dump(mode="json")
    asha = AshaTermination(grace_epochs=args.grace, reduction_factor=args.rf)
    out = {}
    for name, termination in (("full grid", None), ("asha", asha)):
        start = time.perf_counter()
        best, epochs, rows = run(base, termination)
        out[name] = (best, epochs, time.perf_counter() - start)
        if termination is None and args.save_curves:
            with open(args.save_curves, "w") as f:
                json.dump([{"params": r[1], "curve": r[5]} for r in rows], f)
        for number, params, trained, value, reason, _ in rows:
            shown = {k.split(".")[-1]: v for k, v in params.items()}
            print(
                f"  {name:9} #{number:2} {shown} epochs {trained:2} {METRIC} {value:.4f} {reason}"
            )
    (full, full_epochs, full_s), (fast, fast_epochs, fast_s) = out["full grid"], out["asha"]
    print(
        f"grid: {grid_size(PARAMETERS)} points x {args.epochs} epochs; "
        f"ASHA grace {args.grace}, reduction factor {args.rf}"
    )
    print(f"full grid: best {METRIC} {full:.4f}, epochs {full_epochs}, {full_s:.0f} s")
    print(f"asha:      best {METRIC} {fast:.4f}, epochs {fast_epochs}, {fast_s:.0f} s")
    gap_pp = (full - fast) * 100
    share = fast_epochs / full_epochs
    print(
        f"ASHA best - full best: {-gap_pp:+.2f} pp (goal >= -0.5); epochs {share:.0%} of the "
        f"full grid's (goal <= 40%)"
    )
    verdict = "MET" if gap_pp <= 0.5 and share <= 0.4 else "NOT MET"
    print(f"goal {verdict}")


if __name__ == "__main__":
    main()

"""The tolerance of packed trials (docs/sweeps.md "Packed trials"): how far a packed member's
final validation metrics are from its solo run's, against the solo run's own seed-to-seed
spread.

For each model, ``--seeds`` solo runs (seeds 0..n-1, everything else equal) give the
spread (standard deviation and range) of the final val_accuracy and val_loss; the same
specs trained as one pack (each member with its own seed, so its own split, scaling and
batch order) give each member's distance to its solo run.

    .venv/bin/python bench/packed_tolerance.py [--seeds 8] [--epochs 5]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from ml.engine import TrainResult, train
from ml.pack import PackMember, train_pack
from ml.spec import JobSpec

MODELS: dict[str, dict[str, object]] = {
    "mlp": {"kind": "mlp"},
    "cnn": {"kind": "cnn", "channels": [16, 32]},
}


def spec(model: dict[str, object], seed: int, epochs: int) -> JobSpec:
    return JobSpec.model_validate(
        {
            "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 32},
            "model": model,
            "epochs": epochs,
            "optimizer": {"kind": "adam", "lr": 1e-3},
            "regularization": {"weight_decay": 1e-3},
            "seed": seed,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, model in MODELS.items():
        specs = [spec(model, s, args.epochs) for s in range(args.seeds)]
        solo = [train(s).final_metrics for s in specs]
        packed = train_pack([PackMember(f"s{i}", s) for i, s in enumerate(specs)])
        for metric in ("val_accuracy", "val_loss"):
            values = [m[metric] for m in solo]
            gaps = []
            for ref, result in zip(solo, packed, strict=True):
                assert isinstance(result, TrainResult), result
                gaps.append(abs(result.final_metrics[metric] - ref[metric]))
            print(
                f"{name} {metric:12s} over {args.seeds} seeds x {args.epochs} epochs: solo mean "
                f"{statistics.mean(values):.4f}, sd {statistics.stdev(values):.4f}, range "
                f"{max(values) - min(values):.4f}; |packed - solo| max {max(gaps):.2e}, "
                f"mean {statistics.mean(gaps):.2e}"
            )


if __name__ == "__main__":
    main()

"""Data-parallel scaling: ``resources.devices: 2`` against 1 on a compute-bound CNN step.

Both arms train the same spec through ``ml.train`` (synthetic 3x32x32 images, a CNN
[32, 64] with batch norm, global batch 128: one step is tens of milliseconds of
convolution on one core, so the gradient all-reduce of ~20k parameters is small beside
it). On CPU every process runs one torch thread: 1 process = 1 core, 2 = 2 cores. The
figure is training samples/s (``samples_per_second``, training time only) of the
epochs after the first, median per run; runs alternate between the arms (interleaved),
so a change in the machine's load hits both. Scaling efficiency =
(2-device samples/s / 1-device samples/s) / 2.

    .venv/bin/python bench/data_parallel.py [--repeats 3] [--device cpu|cuda]

``--device cuda`` needs a host with >= 2 GPUs (the goal there: >= 1.8x at 2 devices);
it widens the CNN so that one GPU is busy ([128, 256], batch 512).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from ml.engine import train
from ml.sinks import MemoryMetricSink
from ml.spec import JobSpec


def spec(devices: int, device: str, epochs: int) -> JobSpec:
    wide = device == "cuda"
    return JobSpec.model_validate(
        {
            "dataset": {
                "source": {
                    "kind": "builtin",
                    "name": "synthetic",
                    "synthetic": {
                        "n_samples": 20480 if wide else 2560,
                        "n_classes": 10,
                        "image_shape": [3, 32, 32],
                    },
                },
                "batch_size": 512 if wide else 128,
                "validation_split": 0.0,
            },
            "model": {"kind": "cnn", "channels": [128, 256] if wide else [32, 64]},
            "optimizer": {"kind": "sgd", "lr": 0.01, "momentum": 0.9},
            "epochs": epochs,
            "resources": {"device": device, "devices": devices},
        }
    )


def samples_per_second(devices: int, device: str, epochs: int) -> float:
    metrics = MemoryMetricSink()
    train(spec(devices, device, epochs), metrics=metrics)
    steady = metrics.series("samples_per_second")[1:]  # the first epoch warms up
    return statistics.median(steady)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(1)  # the 1-device arm: one core, as each rank of the 2-device arm
    print(f"load before: {os.getloadavg()}")
    samples_per_second(2, args.device, 2)  # start the rank server (imports) outside the timing
    runs: dict[int, list[float]] = {1: [], 2: []}
    for r in range(args.repeats):
        for devices in (1, 2) if r % 2 == 0 else (2, 1):
            t = time.perf_counter()
            runs[devices].append(samples_per_second(devices, args.device, args.epochs))
            print(f"repeat {r} devices {devices}: {runs[devices][-1]:.0f} samples/s "
                  f"({time.perf_counter() - t:.1f} s wall)", flush=True)  # fmt: skip
    one, two = statistics.median(runs[1]), statistics.median(runs[2])
    print(f"load after: {os.getloadavg()}")
    print(f"1 device: {one:.0f} samples/s  2 devices: {two:.0f} samples/s  "
          f"speed-up {two / one:.2f}x  scaling efficiency {two / one / 2:.0%}")  # fmt: skip
    pairs = [b / a for a, b in zip(runs[1], runs[2], strict=True)]
    print(f"per-repeat speed-ups: {', '.join(f'{p:.2f}x' for p in pairs)}")


if __name__ == "__main__":
    main()

"""Progress-event overhead: training throughput with the worker's `progress` events on
(``worker.progress.ProgressWriter`` writing to a temporary SQLite file, as the worker
does: the latest ``StepProgress`` at most every 0.5 s), against the same training with
no ``on_step_progress`` callback, in one process. Goal: not measurably slower (within
the run-to-run noise, at most 1-2 %).

What the arm adds: a clock read per step, a device read (``meter.sync``) at least every
0.5 s besides the usual every 32 steps, a callback that stores a reference, and a
background thread that commits one small transaction at most twice a second.

Arms interleaved (off, progress, off, ...), first epoch of every run is warm-up;
throughput = training samples per epoch / median epoch wall time; the paired figure
is the median over repeats of (progress run's median epoch / adjacent off run's).

    .venv/bin/python bench/progress_overhead.py [--repeats 8] [--epochs 6]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from metrics_overhead import new_job, spec

from api.db.migrate import upgrade
from api.db.session import session_factory
from ml.data import load_dataset
from ml.engine import train
from ml.spec import JobSpec
from worker.progress import ProgressWriter

ARMS = ("off", "progress")


class EpochTimer:
    def __init__(self) -> None:
        self.epoch, self.ends = 0, [time.perf_counter()]

    def on_progress(self, epoch: int, step: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self.ends.append(time.perf_counter())

    def seconds(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.ends[1:])]  # skip warm-up


def run(arm: str, url: str, job_spec: JobSpec, dataset: object) -> tuple[list[float], int]:
    timer, writer = EpochTimer(), None
    if arm == "progress":
        writer = ProgressWriter(session_factory(url), new_job(url, job_spec), 1)
        writer.start()
    train(
        job_spec,
        on_progress=timer.on_progress,
        on_step_progress=writer.report if writer is not None else None,
        dataset=dataset,  # type: ignore[arg-type]
    )
    written = 0
    if writer is not None:
        writer.close()
        written = writer.events_written
    return timer.seconds(), written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--samples", type=int, default=12_500, help="10k train + 2.5k val")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    job_spec = spec(args.samples, args.epochs)
    dataset = load_dataset(job_spec)
    train_samples = int(args.samples * (1 - job_spec.dataset.validation_split))
    seconds: dict[str, list[float]] = {arm: [] for arm in ARMS}
    paired: list[float] = []
    events, wall = 0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        for _ in range(args.repeats):
            runs = {}
            for arm in ARMS:
                start = time.perf_counter()
                runs[arm], written = run(arm, url, job_spec, dataset)
                if arm == "progress":
                    events, wall = events + written, wall + time.perf_counter() - start
                seconds[arm] += runs[arm]
            paired.append(statistics.median(runs["progress"]) / statistics.median(runs["off"]))
    steps = -(-train_samples // job_spec.dataset.batch_size)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); synthetic "
        f"{train_samples} train samples, batch 32, {steps} steps/epoch; "
        f"{args.repeats} runs x {args.epochs - 1} timed epochs per arm; "
        f"{events} progress events written, {events / max(wall, 1e-9):.2f}/s"
    )
    rate = {arm: train_samples / statistics.median(s) for arm, s in seconds.items()}
    for arm in ARMS:
        print(
            f"{arm:9s} {rate[arm]:10.0f} samples/s   median epoch "
            f"{statistics.median(seconds[arm]) * 1000:7.1f} ms   "
            f"{rate['off'] / rate[arm] - 1:+7.1%} vs off"
        )
    spread = statistics.quantiles(paired, n=4) if len(paired) >= 2 else [0.0, 0.0, 0.0]
    print(
        f"paired    progress vs off, median of {len(paired)} adjacent-run ratios: "
        f"{statistics.median(paired) - 1:+.1%} (quartiles {spread[0] - 1:+.1%} .. "
        f"{spread[2] - 1:+.1%})"
    )


if __name__ == "__main__":
    main()

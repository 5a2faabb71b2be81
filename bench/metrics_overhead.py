"""Metrics overhead: training throughput with metrics streamed to the SQL store, against
the same training with metrics off, in one process. Goal: at most 3% slower.

Arms, interleaved (off, sql, control, off, ...) so load changes on a shared machine hit
all alike:

- ``off``: no metric sink (the engine's null sink);
- ``sql``: ``worker.metric_sink.SqlMetricSink`` on a temporary SQLite file, as the worker
  configures it (a batch at 500 points but at most every 0.5 s, else every 2 s, and at
  each epoch end; background flusher thread);
- ``before``: ``sql`` as it was before issue 16, re-measured in the same run: one
  executemany row per point (``legacy_write_metrics`` below) and SQLite's
  ``synchronous=FULL`` (every commit synced to disk), on a database file of its own;
- ``control``: the same store with a commit per point -- the naive sink -- to show the
  harness does see overhead when there is some.

Step-level logging: the engine logs once per epoch, which is too few points to load a
sink, so every arm logs ``--values`` host-side values at every optimizer step (from the
per-step ``RunControl.should_stop`` hook, to the arm's sink; ``off`` drops them).

Throughput = training samples per epoch / the median wall time of an epoch (training,
validation, the epoch-end flush: all of it, timed between epoch ends), the first epoch
of every run being warm-up. On a shared machine the load drifts, so the overhead is
also given paired: the median over repeats of (sql run's median epoch / the adjacent off
run's median epoch).

    .venv/bin/python bench/metrics_overhead.py [--repeats 10] [--epochs 6] [--values 4]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from api.db.migrate import upgrade
from api.db.session import make_engine, session_factory
from api.ledger import events
from api.ledger import metrics as metrics_repo
from api.ledger import repository as repo
from api.ledger.repository import fence
from api.teams.repository import DEFAULT_TEAM, get_or_create_team
from ml.data import load_dataset
from ml.engine import train
from ml.sinks import MetricSink
from ml.spec import SPEC_VERSION, JobSpec
from worker.metric_sink import SqlMetricSink

ARMS = ("off", "sql", "before", "control")


def spec(samples: int, epochs: int) -> JobSpec:
    return JobSpec.model_validate(
        {
            "dataset": {
                "source": {
                    "kind": "builtin",
                    "name": "synthetic",
                    "synthetic": {"n_samples": samples, "n_features": 32, "n_classes": 4},
                },
                "batch_size": 32,
            },
            "model": {"kind": "mlp", "hidden_units": [64]},
            "epochs": epochs,
            "resources": {"device": "cpu"},
        }
    )


class NullSink:
    def log(self, step: int, epoch: int, values: Mapping[str, float]) -> None: ...

    def flush(self) -> None: ...


class StepLogger:
    """RunControl that logs ``n`` values per optimizer step and times each epoch."""

    def __init__(self, sink: MetricSink, n: int) -> None:
        self.sink, self.names = sink, [f"step_value_{i}" for i in range(n)]
        self.step, self.epoch = 0, 0
        self.epoch_ends: list[float] = [time.perf_counter()]

    def should_stop(self) -> bool:
        self.step += 1
        self.sink.log(self.step, self.epoch, {k: self.step * 1e-3 for k in self.names})
        return False

    def on_progress(self, epoch: int, step: int) -> None:
        if epoch != self.epoch:  # an epoch just ended (its metrics flushed)
            self.epoch = epoch
            self.epoch_ends.append(time.perf_counter())

    def epoch_seconds(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.epoch_ends[1:])]  # skip warm-up


def new_job(url: str, job_spec: JobSpec) -> str:
    with session_factory(url)() as s:
        team = get_or_create_team(s, DEFAULT_TEAM)
        job = repo.create_job(
            s,
            team_id=team.id,
            key_id=None,
            name="bench",
            spec=job_spec.model_dump(mode="json"),
            spec_version=SPEC_VERSION,
            queue="bench",
            epochs=job_spec.epochs,
            max_restarts=0,
        )
        s.flush()
        assert repo.claim_job(s, job.id, 3600) == 1
        s.commit()
        return job.id


def legacy_write_metrics(
    session: Session, job_id: str, attempt: int, points: Sequence[metrics_repo.Row]
) -> None:
    """``api.ledger.metrics.write_metrics`` before issue 16: the driver's executemany, a row
    each."""
    if not points:
        return
    fence(session, job_id, attempt)
    rows = [(job_id, p[0], p[1], p[2], None if p[3] != p[3] else p[3], attempt) for p in points]
    session.connection().exec_driver_sql(
        "INSERT INTO metric_points (job_id, name, step, epoch, value, attempt) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, name, step) DO UPDATE SET "
        "epoch = excluded.epoch, value = excluded.value, attempt = excluded.attempt",
        rows,
    )
    events.add_event(
        session,
        job_id,
        events.METRICS,
        {"attempt": attempt, **metrics_repo.metrics_payload(points)},
    )


def synced_factory(url: str) -> sessionmaker[Session]:
    """Sessions whose SQLite connections sync every commit (the default before issue 16)."""
    engine = make_engine(url)

    @event.listens_for(engine, "connect")
    def _full(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA synchronous=FULL")

    return sessionmaker(engine, expire_on_commit=False)


def run(
    arm: str, url: str, job_spec: JobSpec, dataset: object, n_values: int, before_url: str
) -> list[float]:
    sink: MetricSink
    sql: SqlMetricSink | None = None
    if arm == "off":
        sink = NullSink()
    else:
        factory = session_factory(url)
        if arm == "before":
            url, factory = before_url, synced_factory(before_url)
        job_id = new_job(url, job_spec)
        if arm in ("sql", "before"):
            sql = SqlMetricSink(factory, job_id, 1, flush_points=500, flush_seconds=2.0)
        else:  # a transaction per point
            sql = SqlMetricSink(factory, job_id, 1, flush_points=1, max_batch=1, background=False)
        sink = sql
    control = StepLogger(sink, n_values)
    current = metrics_repo.write_metrics
    if arm == "before":
        metrics_repo.write_metrics = legacy_write_metrics  # the sink looks it up per batch
    try:
        train(
            job_spec,
            metrics=sink,
            control=control,
            on_progress=control.on_progress,
            dataset=dataset,  # type: ignore[arg-type]
        )
        if sql is not None:
            sql.close()
    finally:
        metrics_repo.write_metrics = current
    if sql is not None:
        assert sql.points_written == sql.points_logged
    return control.epoch_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--samples", type=int, default=12_500, help="10k train + 2.5k val")
    parser.add_argument("--values", type=int, default=4, help="values logged per step")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--control-epochs", type=int, default=2, help="the control arm is slow: shorter runs"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    job_spec = spec(args.samples, args.epochs)
    control_spec = spec(args.samples, args.control_epochs)
    dataset = load_dataset(job_spec)
    train_samples = int(args.samples * (1 - job_spec.dataset.validation_split))
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        before_url = f"sqlite:///{Path(tmp) / 'bench-before.db'}"
        upgrade(url)
        upgrade(before_url)
        seconds: dict[str, list[float]] = {arm: [] for arm in ARMS}
        paired: list[float] = []
        paired_before: list[float] = []
        for _ in range(args.repeats):
            runs = {
                arm: run(arm, url, control_spec if arm == "control" else job_spec, dataset,
                         args.values, before_url)
                for arm in ARMS
            }  # fmt: skip
            for arm in ARMS:
                seconds[arm] += runs[arm]
            paired.append(statistics.median(runs["sql"]) / statistics.median(runs["off"]))
            paired_before.append(statistics.median(runs["before"]) / statistics.median(runs["off"]))
    steps = -(-train_samples // job_spec.dataset.batch_size)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); synthetic "
        f"{train_samples} train samples, batch 32, {steps} steps/epoch, "
        f"{args.values} values/step = {steps * args.values} points/epoch; "
        f"{args.repeats} runs x {args.epochs - 1} timed epochs per arm"
    )
    rate = {arm: train_samples / statistics.median(s) for arm, s in seconds.items()}
    for arm in ARMS:
        slower = rate["off"] / rate[arm] - 1
        print(
            f"{arm:8s} {rate[arm]:10.0f} samples/s   median epoch "
            f"{statistics.median(seconds[arm]) * 1000:7.1f} ms   {slower:+7.1%} vs off"
        )
    pair = statistics.median(paired) - 1
    print(f"paired   sql vs off, median of {len(paired)} adjacent-run ratios: {pair:+.1%}")
    before = statistics.median(paired_before) - 1
    print(f"paired   before vs off, median of {len(paired)} adjacent-run ratios: {before:+.1%}")
    ok = max(rate["off"] / rate["sql"] - 1, pair) <= 0.03
    print(f"goal: sql at most 3% slower than off -> {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()

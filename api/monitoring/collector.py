"""A prometheus-client collector that reads the ledger (api.monitoring.ledger) at scrape time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from api.monitoring.ledger import Histogram, Ledger, read_ledger


def _buckets(h: Histogram) -> list[tuple[str, float]]:
    out = [(repr(float(b)), float(n)) for b, n in zip(h.bounds, h.buckets, strict=True)]
    return [*out, ("+Inf", float(h.count))]


class LedgerCollector(Collector):
    def __init__(
        self,
        factory: sessionmaker[Session],
        alive_within_seconds: float,
        cache_seconds: float = 2.0,
    ) -> None:
        self._factory = factory
        self._alive_within = alive_within_seconds
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, Ledger] | None = None

    def ledger(self) -> Ledger:
        with self._lock:  # several scrapers at once: one query set
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self._cache_seconds:
                with self._factory() as session:
                    self._cached = (now, read_ledger(session))
            return self._cached[1]

    def collect(self) -> Iterator[Any]:
        ledger = self.ledger()
        jobs = GaugeMetricFamily(
            "trainforge_jobs", "Jobs by status and queue, now.", labels=["status", "queue"]
        )
        for (status, queue), n in sorted(ledger.jobs.items()):
            jobs.add_metric([status, queue], n)
        queued = GaugeMetricFamily(
            "trainforge_jobs_queued",
            "Queued jobs by queue and why they wait (`quota`, `waiting_for_worker`).",
            labels=["queue", "queue_reason"],
        )
        for (queue, reason), n in sorted(ledger.queued.items()):
            queued.add_metric([queue, reason], n)
        ended = CounterMetricFamily(
            "trainforge_jobs_ended",
            "Runs that reached a terminal status, by status and status_reason.",
            labels=["status", "status_reason"],
        )
        for (status, reason), n in sorted(ledger.ended.items()):
            ended.add_metric([status, reason], n)
        yield from (jobs, queued, ended)
        waits = HistogramMetricFamily(
            "trainforge_job_queue_wait_seconds",
            "Per start of a run: seconds from (re)queued to running (submit → running).",
            labels=["queue"],
        )
        for queue, h in sorted(ledger.waits.items()):
            waits.add_metric([queue], _buckets(h), sum_value=h.total)
        runs = HistogramMetricFamily(
            "trainforge_job_run_seconds",
            "Per run that ended: seconds from running to its terminal status.",
            labels=["queue", "status"],
        )
        for (queue, status), h in sorted(ledger.runs.items()):
            runs.add_metric([queue, status], _buckets(h), sum_value=h.total)
        yield from (waits, runs)
        yield from self._workers(ledger)
        yield from _sweeps(ledger)

    def _workers(self, ledger: Ledger) -> Iterator[Any]:
        alive = GaugeMetricFamily(
            "trainforge_workers_alive",
            f"Workers whose last heartbeat is under {self._alive_within:g} s old.",
        )
        alive.add_metric([], sum(1 for _, age in ledger.heartbeats if age < self._alive_within))
        age = GaugeMetricFamily(
            "trainforge_worker_heartbeat_age_seconds",
            "Seconds since each known worker's last heartbeat.",
            labels=["worker"],
        )
        for worker, seconds in sorted(ledger.heartbeats):
            age.add_metric([worker], seconds)
        yield from (alive, age)


def _sweeps(ledger: Ledger) -> Iterator[Any]:
    if ledger.sweeps is not None:
        sweeps = GaugeMetricFamily("trainforge_sweeps", "Sweeps by status.", labels=["status"])
        for status, n in sorted(ledger.sweeps.items()):
            sweeps.add_metric([status], n)
        yield sweeps
    if ledger.trials is not None:
        trials = GaugeMetricFamily(
            "trainforge_sweep_trials", "Sweep trials (jobs) by status.", labels=["status"]
        )
        for status, n in sorted(ledger.trials.items()):
            trials.add_metric([status], n)
        yield trials
    if ledger.packs is not None:  # issue 26: packs running now and the trials in them
        packs_running, members = ledger.packs
        yield GaugeMetricFamily(
            "trainforge_sweep_packs_running",
            "Packs of sweep trials training now (each takes one worker slot).",
            value=packs_running,
        )
        yield GaugeMetricFamily(
            "trainforge_sweep_pack_members_running",
            "Sweep trials running inside a pack (each counts against its team's quota).",
            value=members,
        )

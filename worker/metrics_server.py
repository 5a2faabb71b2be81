"""``trainforge worker --metrics-port N``: this worker's own Prometheus endpoint.

What only the worker knows, read at scrape time: the running job's throughput
(samples per second and seconds per optimizer step, from the engine's progress
callbacks) with its ``job_id`` as a label only while it runs, and the GPU's
memory and utilization when there is one. Cluster-wide figures (jobs, queues,
workers alive) come from the API's ``/metrics``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


@dataclass
class _Running:
    job_id: str
    attempt: int
    batch_size: int
    started: float
    last_step: int | None = None
    last_at: float = 0.0
    step_seconds: float | None = None


class RunningJob:
    """The job this worker runs now (one at a time), fed by the runner."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._job: _Running | None = None

    def start(self, job_id: str, attempt: int, batch_size: int) -> None:
        with self._lock:
            self._job = _Running(job_id, attempt, batch_size, time.monotonic())

    def end(self) -> None:
        with self._lock:
            self._job = None

    def progress(self, step: int) -> None:
        now = time.monotonic()
        with self._lock:
            job = self._job
            if job is None:
                return
            if job.last_step is not None and step > job.last_step:
                job.step_seconds = (now - job.last_at) / (step - job.last_step)
            if job.last_step is None or step != job.last_step:
                job.last_step, job.last_at = step, now

    def track(self, on_progress: Callable[[int, int], None]) -> Callable[[int, int], None]:
        """Wrap the engine's ``on_progress(epoch, step)`` callback."""

        def both(epoch: int, step: int) -> None:
            self.progress(step)
            on_progress(epoch, step)

        return both

    def snapshot(self) -> _Running | None:
        with self._lock:
            return None if self._job is None else _Running(**vars(self._job))


RUNNING = RunningJob()


class WorkerCollector(Collector):
    def __init__(self, running: RunningJob, worker: str) -> None:
        self._running, self._worker = running, worker

    def collect(self) -> Iterator[Any]:
        busy = GaugeMetricFamily(
            "trainforge_worker_busy", "1 while this worker runs a job.", labels=["worker"]
        )
        job = self._running.snapshot()
        busy.add_metric([self._worker], 1.0 if job is not None else 0.0)
        yield busy
        if job is not None:
            labels = ["worker", "job_id"]
            values = [self._worker, job.job_id]
            step = GaugeMetricFamily(
                "trainforge_worker_job_step_seconds",
                "Seconds per optimizer step of the running job (over its last progress interval).",
                labels=labels,
            )
            rate = GaugeMetricFamily(
                "trainforge_worker_job_samples_per_second",
                "Training samples per second of the running job (steps/s x batch size).",
                labels=labels,
            )
            steps = GaugeMetricFamily(
                "trainforge_worker_job_step", "Global step of the running job.", labels=labels
            )
            if job.step_seconds:
                step.add_metric(values, job.step_seconds)
                rate.add_metric(values, job.batch_size / job.step_seconds)
            steps.add_metric(values, float(job.last_step or 0))
            yield from (step, rate, steps)
        yield from _cuda()


def _cuda() -> Iterator[Any]:
    import torch  # the worker has it loaded already

    if not torch.cuda.is_available():
        return
    # By UUID: in a container every worker's only GPU is index 0; the UUID names the card.
    labels = ["device", "uuid"]
    alloc = GaugeMetricFamily(
        "trainforge_worker_cuda_memory_allocated_bytes", "torch allocated bytes.", labels=labels
    )
    reserved = GaugeMetricFamily(
        "trainforge_worker_cuda_memory_reserved_bytes", "torch reserved bytes.", labels=labels
    )
    total = GaugeMetricFamily(
        "trainforge_worker_cuda_memory_total_bytes", "The device's memory.", labels=labels
    )
    util = GaugeMetricFamily(
        "trainforge_worker_cuda_utilization_ratio",
        "GPU busy fraction over the driver's last sample period (needs NVML).",
        labels=labels,
    )
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        name = [str(index), _uuid(props)]
        alloc.add_metric(name, float(torch.cuda.memory_allocated(index)))
        reserved.add_metric(name, float(torch.cuda.memory_reserved(index)))
        total.add_metric(name, float(props.total_memory))
        with suppress(Exception):  # no NVML (pynvml): leave the series out
            util.add_metric(name, torch.cuda.utilization(index) / 100.0)
    yield from (alloc, reserved, total, util)


def _uuid(props: Any) -> str:
    """nvidia-smi's spelling, GPU-xxxxxxxx-...; "" where torch does not know it."""
    raw = getattr(props, "uuid", None)
    if raw is None:
        return ""
    text = str(raw)
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def serve(port: int, worker: str, host: str = "0.0.0.0") -> CollectorRegistry:
    """Start the endpoint in a daemon thread; returns its registry (for tests)."""
    registry = CollectorRegistry()
    registry.register(WorkerCollector(RUNNING, worker))
    start_http_server(port, addr=host, registry=registry)
    return registry

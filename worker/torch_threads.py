"""How many intra-op CPU threads a job trains with.

PyTorch's default is one thread per core, and its OpenMP threads spin while they wait
for each other. On a host whose cores are busy with other work that is ruinous: a
thread that lost its core holds up every parallel region while its partner spins,
and the README's digits job took 10.1 s with two threads against 4.7 s with one on a
loaded 2-core machine; on an idle host the second thread is worth having
(bench/threads.py, bench/RESULTS.md). So, unless ``TRAINFORGE_TORCH_THREADS`` fixes the
count, each job gets as many threads as there are cores *not* busy with other processes
when it starts (at least one): a background sampler reads /proc/stat once a second and
subtracts this process's own CPU time, so the figure is "everyone else".

A step too small to split is the other case: the digits MLP ([128], batch 32: 0.3 M
multiply-adds a step) trains 1.2-1.5x slower with two threads than with one on an idle
host, since waking the second thread costs more than its half of the work. So a job
whose step is below ``SMALL_STEP`` multiply-adds (``ml.architecture``'s estimate) gets
one thread whatever the load.

(Passive OpenMP waits, ``OMP_WAIT_POLICY=PASSIVE``, were measured too: they cost an idle
host 1.4-2.4x, since every parallel region then wakes its threads from sleep.)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cores() -> int:
    """CPUs this process may run on (a container's cpuset, taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _busy_and_total_seconds() -> tuple[float, float] | None:
    """All CPUs' busy and total time since boot (/proc/stat), in CPU-seconds."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class BusyMeter:
    """Cores kept busy by other processes, a moving average over the last few seconds."""

    def __init__(self, period: float = 1.0, smoothing: float = 0.5) -> None:
        self._period, self._smoothing = period, smoothing
        self._lock = threading.Lock()
        self._others: float | None = None
        self._last = self._sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="busy-meter", daemon=True)

    def start(self) -> BusyMeter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        counters = _busy_and_total_seconds()
        return None if counters is None else (*counters, _own_cpu_seconds())

    def update(self) -> None:
        now = self._sample()
        last, self._last = self._last, now
        if now is None or last is None:
            return
        busy, total, own = (a - b for a, b in zip(now, last, strict=True))
        if total <= 0:
            return
        # total is CPU-seconds over all cores: busy / total * cores = busy cores.
        others = max(0.0, (busy - own) / total * cores())
        with self._lock:
            prev = self._others
            self._others = others if prev is None else prev + self._smoothing * (others - prev)

    @property
    def others_busy(self) -> float | None:
        with self._lock:
            return self._others

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self.update()


# Forward multiply-adds per step below which a second thread does not pay (measured on
# the digits MLP at several widths: bench/RESULTS.md, "Threads").
SMALL_STEP = 4_000_000


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    why: str


_meter: BusyMeter | None = None


def start_meter() -> None:
    """The worker starts one sampler at start-up; jobs then read it at no cost."""
    global _meter
    if _meter is None:
        _meter = BusyMeter().start()


def others_busy_now(window: float = 0.25) -> float:
    """One measurement over ``window`` seconds, for a process without a running meter."""
    meter = BusyMeter()
    time.sleep(window)
    meter.update()
    busy = meter.others_busy
    return busy if busy is not None else 0.0


def choose(
    configured: int | None, others_busy: float | None = None, step_work: int | None = None
) -> ThreadChoice:
    """``configured``: TRAINFORGE_TORCH_THREADS (None: by the step's size and the host's
    load). ``step_work``: the job's forward multiply-adds per step, if known."""
    n = cores()
    if configured is not None:
        return ThreadChoice(configured, "TRAINFORGE_TORCH_THREADS")
    if step_work is not None and step_work < SMALL_STEP:
        return ThreadChoice(
            1,
            f"automatic: a small step ({step_work / 1e6:.1f} M multiply-adds) gains "
            "nothing from more threads",
        )
    if others_busy is None:
        others_busy = _meter.others_busy if _meter is not None else None
    if others_busy is None:
        others_busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    free = n - others_busy
    threads = max(1, min(n, int(free + 0.5)))
    return ThreadChoice(
        threads, f"automatic: {n} core(s), {others_busy:.1f} busy with other processes"
    )


def apply(configured: int | None, step_work: int | None = None) -> ThreadChoice:
    """Set torch's intra-op threads for the next job; returns what was chosen and why."""
    import torch

    choice = choose(configured, step_work=step_work)
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    return choice

"""Data parallel, parent side: one job's ``resources.devices`` rank processes, watched.

``train_parallel`` is what ``ml.train`` runs for ``devices > 1``. It starts N rank
processes (``forkserver``: each forks from a server that imported the engine once,
so a rank starts in a fraction of a second and never inherits the worker's threads),
which meet at a free localhost port (``torch.distributed`` TCP rendezvous; gloo on
CPU, nccl on CUDA, plus a gloo group for host-side agreement) and train with
``ml.engine.train_on(..., shard=...)``. One job, not N: the sinks stay in this
process and the ranks talk to it through one queue --

- rank 0 sends the metric points, progress, and every checkpoint (written once; the
  save's outcome goes back to it, so a storage quota or a lost lease ends the run as
  it does on one device) and asks the sweep's pruner;
- every rank sends its log lines, tagged ``[rank r]`` (rank 0 the run's story, the
  others their own start line, warnings and errors);
- this process reads ``control`` (cancel, lease, shutdown) and sets a shared stop
  flag that the ranks agree on at their next step;
- it watches the processes: a rank that dies without a word (killed, segfault, out
  of host memory) ends the attempt with :class:`RankLost` at once -- the others are
  killed, not left waiting on a collective (whose timeout, ``COLLECTIVE_TIMEOUT``,
  is only the backstop) -- and the worker retries the job under
  ``retry.max_restarts`` as it does after a lost worker.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import signal
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ml.architecture import TrainError
from ml.data import LoadedDataset, load_dataset
from ml.distributed import Shard
from ml.logsink import Level, LogSink
from ml.pruning import EpochPruner
from ml.sinks import (
    CheckpointBlob,
    CheckpointSink,
    MetricSink,
    RunControl,
    StepProgress,
)
from ml.spec import JobSpec
from ml.warm_start import WarmStart

# A collective nobody answers (a rank hung, not dead) fails after this long. Rank 0
# validates while the others wait in a broadcast: the bound is generous on purpose;
# a dead rank is found by the parent within POLL_SECONDS.
R = TypeVar("R")
COLLECTIVE_TIMEOUT = timedelta(minutes=10)
POLL_SECONDS = 0.05
# How long a rank's error waits for the other processes to show whether one of them died
# (the error is then that death's echo, e.g. gloo's "connection reset by peer").
PEER_GRACE_SECONDS = 1.0
STOP_GRACE_SECONDS = 5.0  # after the run's end or a failure, before the ranks are killed


class RankLost(TrainError):
    """A rank process died without reporting an error: the attempt is lost, as a worker."""

    def __init__(self, rank: int, exitcode: int | None) -> None:
        self.rank, self.exitcode = rank, exitcode
        how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit {exitcode}"
        super().__init__(
            f"data-parallel rank {rank} died ({how}) without reporting an error; the other "
            "ranks were stopped"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (RankLost, (self.rank, self.exitcode))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RankArgs:
    """Everything a rank needs, pickled into its process."""

    spec: JobSpec
    entry: Callable[..., Any]  # ml.engine.train_on (passed in: ml.engine imports this module)
    rank: int
    world: int
    port: int
    device: str  # "cpu" or "cuda:<index>"
    dataset: LoadedDataset
    resume: CheckpointBlob | None
    warm_start: WarmStart | None
    has_pruner: bool
    has_checkpoints: bool
    step_progress: bool


def _context() -> Any:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["ml.launch"])
    return ctx


def _devices(spec: JobSpec, device_ids: list[int] | None) -> list[str]:
    world = spec.resources.devices
    use_cuda = spec.resources.device == "cuda" or (
        spec.resources.device == "auto" and torch.cuda.is_available()
    )
    if not use_cuda:
        return ["cpu"] * world
    ids = list(range(world)) if device_ids is None else list(device_ids)
    have = torch.cuda.device_count()
    if len(ids) != world or any(not 0 <= i < have for i in ids):
        raise TrainError(
            f"resources.devices is {world} but this worker was given GPUs {ids} of the "
            f"{have} it can see: it needs {world} distinct ones"
        )
    return [f"cuda:{i}" for i in ids]


def train_parallel(
    spec: JobSpec,
    *,
    entry: Callable[..., R],
    metrics: MetricSink | None,
    checkpoints: CheckpointSink | None,
    control: RunControl | None,
    on_progress: Callable[[int, int], None] | None,
    on_step_progress: Callable[[StepProgress], None] | None,
    dataset: LoadedDataset | None,
    logs: LogSink | None,
    pruner: EpochPruner | None,
    warm_start: WarmStart | None,
    device_ids: list[int] | None,
) -> R:
    """``ml.train`` for ``resources.devices`` > 1: see the module's docstring. ``entry``
    trains one rank (``ml.engine.train_on``); the result is rank 0's."""
    world = spec.resources.devices
    devices = _devices(spec, device_ids)
    loaded = dataset if dataset is not None else load_dataset(spec)
    resume = checkpoints.load() if checkpoints is not None else None
    ctx = _context()
    events, replies, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    port = free_port()
    procs = []
    for rank in range(world):
        args = RankArgs(spec, entry, rank, world, port, devices[rank], loaded, resume, warm_start,
                        pruner is not None, checkpoints is not None,
                        on_step_progress is not None)  # fmt: skip
        procs.append(ctx.Process(target=rank_main, args=(args, events, replies, stop), daemon=True))
    for p in procs:
        p.start()
    relay = _Relay(metrics, checkpoints, on_progress, on_step_progress, logs, pruner, replies)
    ended = False
    try:
        result: R = _watch(procs, events, stop, control, relay)
        ended = True
        return result
    finally:
        stop.set()
        _end(procs, STOP_GRACE_SECONDS if ended else 0.0)


def _end(procs: list[Any], grace: float) -> None:
    """Every rank gone: after a run's end, a moment to leave on their own; after a failure
    at once (the others may be waiting on a collective that will never complete)."""
    for p in procs:
        p.join(grace if p.exitcode is None else 0)
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join()


@dataclass
class _Relay:
    """The parent's end of the ranks' queue: the sinks and callbacks of the one job."""

    metrics: MetricSink | None
    checkpoints: CheckpointSink | None
    on_progress: Callable[[int, int], None] | None
    on_step_progress: Callable[[StepProgress], None] | None
    logs: LogSink | None
    pruner: EpochPruner | None
    replies: Any
    failure: BaseException | None = None  # a sink's error: the run's end

    def handle(self, kind: str, body: tuple[Any, ...]) -> None:
        if kind == "log" and self.logs is not None:
            rank, level, message = body
            self.logs.line(level, f"[rank {rank}] {message}")
        elif kind == "metrics" and self.metrics is not None:
            self.metrics.log(*body)
        elif kind == "flush" and self.metrics is not None:
            self.metrics.flush()
        elif kind == "progress" and self.on_progress is not None:
            self.on_progress(*body)
        elif kind == "step_progress" and self.on_step_progress is not None:
            self.on_step_progress(*body)
        elif kind == "save":
            self.replies.put(self._save(*body))
        elif kind == "prune":
            assert self.pruner is not None
            self.replies.put(self.pruner.should_prune(*body))

    def _save(self, blob: CheckpointBlob, step: int, epoch: int, values: Any) -> bool:
        assert self.checkpoints is not None
        try:
            self.checkpoints.save(blob, step, epoch, values)
            return True
        except BaseException as exc:  # noqa: BLE001 -- re-raised by the parent, as is
            self.failure = exc
            return False


def _watch(
    procs: list[Any], events: Any, stop: Any, control: RunControl | None, relay: _Relay
) -> Any:
    results: dict[int, Any] = {}
    while True:
        if control is not None and control.should_stop():
            stop.set()
        try:
            kind, *body = events.get(timeout=POLL_SECONDS)
        except queue.Empty:
            pass
        else:
            if kind == "done":
                results[body[0]] = body[1]
            elif kind == "error":  # the first rank's error ends the run: the others wait
                error: BaseException = pickle.loads(body[1])
                # A peer killed mid-collective shows first as this rank's gloo error
                # ("connection reset by peer"): the dead peer is the cause, a lost worker.
                lost = _dead_peer(procs, results, reporter=body[0])
                raise relay.failure or lost or error
            else:
                relay.handle(kind, tuple(body))
            if relay.failure is not None:
                raise relay.failure
            continue  # drain what is there before looking at the processes
        if len(results) == len(procs):
            return results[0]
        for rank, p in enumerate(procs):
            if p.exitcode is not None and rank not in results and not _more(events):
                raise RankLost(rank, p.exitcode)


def _dead_peer(procs: list[Any], results: dict[int, Any], reporter: int) -> RankLost | None:
    """A rank other than ``reporter`` that died (a signal, or an exit before its result),
    waiting up to ``PEER_GRACE_SECONDS`` for the processes to say; None when every other rank
    is alive or finished cleanly."""
    deadline = time.monotonic() + PEER_GRACE_SECONDS
    while True:
        for rank, p in enumerate(procs):
            if rank == reporter or rank in results or p.exitcode is None:
                continue
            if p.exitcode != 0:
                return RankLost(rank, p.exitcode)
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_SECONDS)


def _more(events: Any) -> bool:
    """Whether a message is still on its way (a rank that exits after a last word)."""
    try:
        return not events.empty()
    except OSError:
        return False


# --------------------------------------------------------------------------- rank side


class _RankLogs:
    """A rank's log lines to the parent. Ranks other than 0 keep their warnings and
    errors only: rank 0 tells the run's story (epochs, checkpoints) for all."""

    def __init__(self, events: Any, rank: int) -> None:
        self.events, self.rank = events, rank

    def line(self, level: Level, message: str) -> None:
        if self.rank == 0 or level != "info":
            self.events.put(("log", self.rank, level, message))


class _RankMetrics:
    def __init__(self, events: Any) -> None:
        self.events = events

    def log(self, step: int, epoch: int, values: Any) -> None:
        self.events.put(("metrics", step, epoch, dict(values)))

    def flush(self) -> None:
        self.events.put(("flush",))


class _RankCheckpoints:
    """Loads the blob the parent read; rank 0 saves through the parent and waits for it."""

    def __init__(self, events: Any, replies: Any, resume: CheckpointBlob | None) -> None:
        self.events, self.replies, self.resume = events, replies, resume

    def load(self) -> CheckpointBlob | None:
        return self.resume

    def save(self, blob: CheckpointBlob, step: int, epoch: int, metrics: Any) -> None:
        self.events.put(("save", blob, step, epoch, dict(metrics)))
        if not _answer(self.replies):
            raise _ParentRefused("the checkpoint could not be saved (see the worker's error)")


class _ParentRefused(TrainError):
    """The parent's sink failed: it raises its own error, this rank just stops."""


class _RankPruner:
    def __init__(self, events: Any, replies: Any) -> None:
        self.events, self.replies = events, replies

    def should_prune(self, epoch: int, values: dict[str, float]) -> bool:
        self.events.put(("prune", epoch, dict(values)))
        return bool(_answer(self.replies))


def _answer(replies: Any) -> Any:
    """The parent's reply; a rank whose parent is gone stops waiting."""
    parent = os.getppid()
    while True:
        try:
            return replies.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:
                raise _ParentRefused("the worker process is gone") from None


class _RankControl:
    """The parent's stop flag; also stop if the parent is gone (orphaned ranks)."""

    def __init__(self, stop: Any) -> None:
        self.stop, self.parent = stop, os.getppid()

    def should_stop(self) -> bool:
        return bool(self.stop.is_set()) or os.getppid() != self.parent


def rank_main(args: RankArgs, events: Any, replies: Any, stop: Any) -> None:
    """One rank's process: join the group, train its share, report how it ended."""
    # Ctrl-C in the worker's terminal reaches the whole process group: the worker hands the
    # job back and stops the ranks itself (the stop flag, then SIGKILL).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs = _RankLogs(events, args.rank)
    try:
        result = _rank_train(args, events, replies, stop, logs)
    except BaseException as exc:  # noqa: BLE001 -- reported to the parent, which decides
        if not isinstance(exc, _ParentRefused):
            logs.line("error", "".join(traceback.format_exception(exc)).rstrip())
        events.put(("error", args.rank, _picklable(exc)))
    else:
        events.put(("done", args.rank, result))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        events.close()
        events.join_thread()


def _picklable(exc: BaseException) -> bytes:
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:  # noqa: BLE001 -- one that cannot cross processes: its words can
        return pickle.dumps(TrainError(f"{type(exc).__name__}: {exc}"))


def _rank_train(args: RankArgs, events: Any, replies: Any, stop: Any, logs: _RankLogs) -> Any:
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # one core per rank: N ranks use N cores
    else:
        if args.spec.deterministic:  # cuBLAS reads it once, at this process's first use
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{args.port}",
        rank=args.rank,
        world_size=args.world,
        timeout=COLLECTIVE_TIMEOUT,
    )
    control = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
    shard = Shard(args.rank, args.world, control)
    per = args.spec.dataset.batch_size // args.world
    line = (
        f"rank {args.rank} of {args.world} on {device} (pid {os.getpid()}, {backend}, "
        f"{torch.get_num_threads()} CPU thread(s)): rows {args.rank * per}.."
        f"{(args.rank + 1) * per - 1} of each batch"
    )
    events.put(("log", args.rank, "info", line))
    lead = args.rank == 0
    return args.entry(
        args.spec,
        device,
        args.dataset,
        metrics=_RankMetrics(events) if lead else None,
        checkpoints=_RankCheckpoints(events, replies, args.resume)
        if args.has_checkpoints
        else None,
        control=_RankControl(stop),
        on_progress=(lambda e, s: events.put(("progress", e, s))) if lead else None,
        on_step_progress=(lambda p: events.put(("step_progress", p)))
        if lead and args.step_progress
        else None,
        logs=logs,
        pruner=_RankPruner(events, replies) if lead and args.has_pruner else None,
        warm_start=args.warm_start,
        shard=shard,
    )

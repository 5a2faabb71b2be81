"""The engine's metric sink, implemented against the SQL store."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from api.ledger import metrics as metrics_repo
from worker.log_sink import SqlLogSink

log = logging.getLogger(__name__)
T = TypeVar("T")


def with_db_retry(
    factory: sessionmaker[Session],
    work: Callable[[Session], T],
    *,
    attempts: int = 8,
    first_delay: float = 0.25,
) -> T:
    """Run ``work`` in its own transaction, retrying while the database is unreachable."""
    delay = first_delay
    for tries in range(1, attempts + 1):
        try:
            with factory() as session:
                out = work(session)
                session.commit()
                return out
        except OperationalError:
            if tries == attempts:
                raise
            log.warning("database unreachable; retrying in %.2fs", delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
    raise AssertionError("unreachable")


class SqlMetricSink:
    """Buffers points and upserts them in batches fenced by the attempt.

    A batch is written when ``flush_points`` points are buffered (but not
    sooner than ``min_flush_interval`` after the last write), every
    ``flush_seconds``, and at each epoch end (the engine calls ``flush``, which
    returns only once every point logged so far is committed). With
    ``background`` (the default) batches are written by a flusher thread, so
    the training loop does not wait on the database (the driver releases the
    GIL during I/O); ``log`` only appends the call's values to the buffer.

    The buffer is bounded: when it holds ``buffer_limit`` points (the flusher
    is behind, e.g. the database is slow), ``log`` writes the buffer itself
    before returning -- backpressure, counted in ``backpressure_flushes``.
    Nothing is dropped. A write error in the flusher (``StaleAttempt`` when
    this attempt was fenced off, or the database gone past the retries) is
    raised in the training thread at its next ``log`` or ``flush``.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        job_id: str,
        attempt: int,
        *,
        flush_points: int = 500,
        flush_seconds: float = 2.0,
        buffer_limit: int = 100_000,
        max_batch: int = 5_000,
        min_flush_interval: float = 0.5,
        background: bool = True,
        lines: SqlLogSink | None = None,
    ) -> None:
        self._factory, self._job_id, self._attempt = factory, job_id, attempt
        self.lines = lines  # the job's log lines ride along with the metric batches
        self._flush_points, self._flush_seconds = flush_points, flush_seconds
        # Every batch pays a fixed cost (a session, the attempt fence, its event, a
        # commit that syncs to disk): a few ms, against microseconds per point. So a
        # full batch waits for this interval since the last write, and fast step-level
        # logging makes fewer, larger batches instead of hundreds of commits a second.
        self._min_flush_interval = min_flush_interval
        self._buffer_limit = max(buffer_limit, 1)
        self._max_batch = max_batch  # points per transaction (and per SSE event)
        self._buffer: list[tuple[int, int, dict[str, float]]] = []
        self._buffered = 0  # points in the buffer
        self._buffer_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one writer at a time: batches commit in order
        self._last_flush = time.monotonic()
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        # Counters, for tests, benchmarks and logs.
        self.points_logged = 0
        self.points_written = 0
        self.batches_written = 0
        self.backpressure_flushes = 0
        self.max_buffered = 0
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name=f"metrics-{job_id}", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------- engine side

    def log(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        self._raise_pending()
        # One entry per call; the writer makes the points (off the training thread).
        entry = (step, epoch, dict(values))
        with self._buffer_lock:
            self._buffer.append(entry)
            self._buffered += len(entry[2])
            buffered = self._buffered
        self.points_logged += len(entry[2])
        if buffered > self.max_buffered:
            self.max_buffered = buffered
        if buffered >= self._buffer_limit:
            self.backpressure_flushes += 1
            self._write_pending()
        elif (since := time.monotonic() - self._last_flush) >= self._flush_seconds or (
            buffered >= self._flush_points and since >= self._min_flush_interval
        ):
            if self._thread is not None:
                self._wake.set()
            else:
                self._write_pending()

    def flush(self) -> None:
        """Synchronous: every point logged so far is committed when this returns."""
        self._raise_pending()
        self._write_pending()

    def close(self) -> None:
        """Stop the flusher and write what is left; raises a pending write error."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.flush()

    # ------------------------------------------------------------- writer side

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            try:
                self._write_pending()
            except Exception as exc:  # noqa: BLE001 - handed to the training thread
                self._error = exc
                return

    def _write_pending(self) -> None:
        with self._write_lock:
            with self._buffer_lock:
                entries, self._buffer, self._buffered = self._buffer, [], 0
            self._last_flush = time.monotonic()
            pending: list[metrics_repo.Row] = [
                (name, step, epoch, float(v))
                for step, epoch, values in entries
                for name, v in values.items()
            ]
            lines = self.lines.drain() if self.lines is not None else []
            for start in range(0, len(pending), self._max_batch):
                batch = pending[start : start + self._max_batch]
                with_db_retry(self._factory, partial(self._write_batch, batch, lines))
                lines = []
                self.points_written += len(batch)
                self.batches_written += 1
            if lines:  # no points this time: the lines alone
                with_db_retry(self._factory, partial(self._write_batch, [], lines))

    def _write_batch(
        self, batch: list[metrics_repo.Row], lines: list[Any], session: Session
    ) -> None:
        metrics_repo.write_metrics(session, self._job_id, self._attempt, batch)
        if lines and self.lines is not None:
            self.lines.write(session, lines, fenced=bool(batch))

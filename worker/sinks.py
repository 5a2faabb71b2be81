"""The engine's sinks, implemented against the SQL store."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from api.db import jobs as repo

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

    Flushes every ``flush_points`` points, every ``flush_seconds``, and at each
    epoch end (the engine calls ``flush``). Flushing is synchronous in the
    training thread, so the buffer cannot outgrow ``flush_points`` while the
    database answers -- that is the backpressure; if it stays unreachable past
    the retries the error ends the run (and the job resumes from a checkpoint).
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        job_id: str,
        attempt: int,
        *,
        flush_points: int,
        flush_seconds: float,
    ) -> None:
        self._factory, self._job_id, self._attempt = factory, job_id, attempt
        self._flush_points, self._flush_seconds = flush_points, flush_seconds
        self._buffer: list[repo.Point] = []
        self._last_flush = time.monotonic()
        self.batches_written = 0

    def log(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        self._buffer.extend(repo.Point(name, step, epoch, float(v)) for name, v in values.items())
        if (
            len(self._buffer) >= self._flush_points
            or time.monotonic() - self._last_flush >= self._flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        batch = self._buffer
        with_db_retry(
            self._factory, lambda s: repo.write_metrics(s, self._job_id, self._attempt, batch)
        )
        self._buffer = []
        self.batches_written += 1

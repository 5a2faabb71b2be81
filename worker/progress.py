"""Writes a running job's ``progress`` events (see ``api.ledger.progress``), throttled.

The engine hands over a ``StepProgress`` at each device read (``report`` only keeps
the latest: no I/O on the training thread); a background thread writes the latest
one at most every ``PROGRESS_SECONDS``, so a job makes at most two progress rows a
second whatever its step rate, and none while nothing moves. A pack's members share one
thread (:class:`SharedProgress`) that writes a few of them per tick, so that a pack writes
about as much as a few jobs.
"""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext

from sqlalchemy.orm import Session, sessionmaker

from api.ledger.progress import record_progress
from api.ledger.repository import StaleAttempt
from ml.sinks import StepProgress

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 0.5


class ProgressWriter:
    def __init__(
        self,
        factory: sessionmaker[Session],
        job_id: str,
        attempt: int,
        interval: float = PROGRESS_SECONDS,
        *,
        own_thread: bool = True,
    ) -> None:
        """``own_thread=False``: a :class:`SharedProgress` writes for it (a pack's member)."""
        self._factory, self._job_id, self._attempt = factory, job_id, attempt
        self.interval = interval  # seconds between writes (read at each wait)
        self._latest: StepProgress | None = None
        self._written: StepProgress | None = None
        self._last_id: int | None = None
        self._stop = threading.Event()
        self._thread = (
            threading.Thread(target=self._run, name=f"progress-{job_id}", daemon=True)
            if own_thread
            else None
        )
        self.done = False  # closed, or fenced off: nothing more to write
        self.events_written = 0

    def start(self) -> None:
        if self._thread is not None:
            self._thread.start()

    def report(self, progress: StepProgress) -> None:
        self._latest = progress  # one reference assignment: the training thread never waits

    @property
    def has_news(self) -> bool:
        latest = self._latest
        return not self.done and latest is not None and latest is not self._written

    def close(self) -> None:
        self.done = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval) and not self.done:
            self.write()

    def write(self, session: Session | None = None) -> None:
        """Write the latest progress if it is news (its own transaction, in ``session`` or a
        new one); a fenced-off or ended attempt writes nothing more."""
        latest = self._latest
        if not self.has_news or latest is None:
            return
        try:
            with self._factory() if session is None else nullcontext(session) as s:
                self._last_id = record_progress(
                    s,
                    self._job_id,
                    self._attempt,
                    epoch=latest.epoch,
                    epochs=latest.epochs,
                    step=latest.step,
                    batch=latest.batch,
                    steps_per_epoch=latest.steps_per_epoch,
                    loss=latest.loss,
                    replaces=self._last_id,
                )
                s.commit()
            self._written = latest
            self.events_written += 1
        except StaleAttempt:
            self.done = True  # fenced off or ended: the lease keeper handles it
            if session is not None:
                session.rollback()
        except Exception:
            log.warning("could not write progress for job %s", self._job_id, exc_info=True)
            if session is not None:
                session.rollback()


class SharedProgress:
    """One thread writing the live progress of a pack's members (a thread each before: 64
    for a pack of 64). Each tick (``PROGRESS_SECONDS``) it writes at most ``per_tick``
    members' news, taking them in turn, so a pack writes about as many rows a second as
    ``per_tick`` solo jobs whatever its size; each write is its own transaction."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        writers: list[ProgressWriter],
        per_tick: int,
        interval: float = PROGRESS_SECONDS,
    ) -> None:
        self._factory, self._writers = factory, writers
        self._per_tick, self._interval = max(1, per_tick), interval
        self._next = 0  # where the next tick starts looking: every member gets its turn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress-pack", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def due(self) -> list[ProgressWriter]:
        """The members this tick writes: up to ``per_tick`` with news, in turn."""
        n = len(self._writers)
        order = [self._writers[(self._next + k) % n] for k in range(n)]
        chosen = [w for w in order if w.has_news][: self._per_tick]
        if chosen:
            self._next = (self._writers.index(chosen[-1]) + 1) % n
        return chosen

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if all(w.done for w in self._writers):
                return
            chosen = self.due()
            if not chosen:
                continue
            with self._factory() as session:
                for writer in chosen:
                    writer.write(session)

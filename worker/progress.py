"""Writes a running job's ``progress`` events (see ``api.ledger.progress``), throttled.

The engine hands over a ``StepProgress`` at each device read (``report`` only keeps
the latest: no I/O on the training thread); a background thread writes the latest
one at most every ``PROGRESS_SECONDS``, so a job makes at most two progress rows a
second whatever its step rate, and none while nothing moves. A pack's members write
less often each (``interval``), so that a pack writes about as much as a few jobs.
"""

from __future__ import annotations

import logging
import threading

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
    ) -> None:
        self._factory, self._job_id, self._attempt = factory, job_id, attempt
        self.interval = interval  # seconds between writes (read at each wait)
        self._latest: StepProgress | None = None
        self._written: StepProgress | None = None
        self._last_id: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"progress-{job_id}", daemon=True)
        self.events_written = 0

    def start(self) -> None:
        self._thread.start()

    def report(self, progress: StepProgress) -> None:
        self._latest = progress  # one reference assignment: the training thread never waits

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            latest = self._latest
            if latest is None or latest is self._written:
                continue
            try:
                with self._factory() as session:
                    self._last_id = record_progress(
                        session,
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
                    session.commit()
                self._written = latest
                self.events_written += 1
            except StaleAttempt:
                return  # fenced off or ended: the lease keeper handles it
            except Exception:
                log.warning("could not write progress for job %s", self._job_id, exc_info=True)

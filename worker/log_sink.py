"""The engine's log sink (ml.logsink) against the SQL store.

Lines are buffered in memory and written by the metric sink in the same
transactions as its metric batches (every few seconds, at every epoch end, at
the end of the run), so logging adds no transaction of its own while metrics
flow. Lines written outside training (the outcome, its error) go into the
status change's own transaction through ``write_now``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from sqlalchemy.orm import Session

from api.db.models import utcnow
from api.joblogs import repository as repo
from ml.logsink import Level

log = logging.getLogger(__name__)
# This process's name in job logs and /metrics (``trainforge worker`` sets the Celery hostname).
WORKER_NAME = f"{socket.gethostname()}-{os.getpid()}"


class SqlLogSink:
    def __init__(self, job_id: str, attempt: int, max_lines: int, source: str = "engine") -> None:
        self._job_id, self._attempt, self._max_lines = job_id, attempt, max_lines
        self._source = source
        self._lock = threading.Lock()
        self._pending: list[repo.Line] = []

    def line(self, level: Level, message: str) -> None:
        self.add(level, message, self._source)

    def worker_line(self, level: Level, message: str) -> None:
        """A line the worker itself says (not the engine)."""
        self.add(level, message, "worker")

    def add(self, level: Level, message: str, source: str) -> None:
        # The worker's own log names the job: one place to grep when a job misbehaves.
        log.log(logging.INFO if level == "info" else logging.WARNING, "job %s: %s",
                self._job_id, message)  # fmt: skip
        with self._lock:
            self._pending.append(repo.Line(utcnow(), level, source, message))

    def drain(self) -> list[repo.Line]:
        with self._lock:
            lines, self._pending = self._pending, []
        return lines

    def write(self, session: Session, lines: list[repo.Line], *, fenced: bool = False) -> None:
        repo.write_lines(
            session, self._job_id, self._attempt, lines, self._max_lines, fenced=fenced
        )


def outcome(job_id: str, attempt: int, status: str, reason: str, error: str | None) -> str:
    """How a run ended, in one line: the job log's last line and the worker's own log."""
    text = f"job {job_id} attempt {attempt} {status} ({reason})"
    return f"{text}: {error}" if error else text


def outcome_level(status: str) -> Level:
    return "info" if status == "succeeded" else "warning" if status == "canceled" else "error"


def crash(exc: BaseException) -> str:
    """An unexpected exception with its causes (``raise ... from``), innermost last."""
    parts, seen = [], 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
        seen += 1
    return "crashed: " + " <- caused by ".join(parts)

"""An idle worker does not wait for a lost doorbell (issue 28, finding 12).

The SQL row is the ledger; the broker's message is only a doorbell. A message can be
lost (a broker restart, a worker that swallowed it), and the reconciler re-publishes
only after ``republish_after_seconds`` (5 minutes by default). While this worker runs
nothing, it looks at the ledger every ``idle_claim_seconds`` (default 5) and rings its
own doorbell for the best eligible job of its queues that has waited at least that
long: the job starts within about twice that interval, not minutes. A second doorbell
for a job is harmless (the claim is a conditional UPDATE: one wins, the other acks).

Also here: :func:`database_problem`, what a worker checks before it consumes any
message -- a worker whose database is unreachable or not at the code's schema would
take other workers' doorbells and fail them; it waits, saying why, instead (and
worker/database_gate.py stops it consuming when its database breaks later).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.db.migrate import alembic_config
from api.db.models import utcnow
from api.db.session import session_factory
from api.ledger import devices, scheduling
from api.ledger.devices import Pool
from api.ledger.models import Job
from api.queue import CeleryJobQueue, JobQueue
from api.settings import Settings
from worker.devices import this_worker_pool
from worker.metrics_server import RUNNING

log = logging.getLogger(__name__)


def overdue_jobs(
    session: Session, queues: list[str], waited: timedelta, free: int | None = None
) -> list[tuple[str, str]]:
    """(job id, queue): per queue, the job that should run next, if it waited ``waited``.

    ``free``: the devices this worker's pool has free now; a job needing more is not
    rung for (it would only be passed over again), the next one that fits is."""
    found = []
    cutoff = utcnow() - waited
    for queue in queues:
        for job_id in scheduling.pick_order(session, queue, limit=5):
            row = session.execute(
                select(Job.updated_at, Job.devices).where(Job.id == job_id)
            ).first()
            if row is None or (free is not None and int(row.devices or 1) > free):
                continue
            if row.updated_at <= cutoff:
                found.append((job_id, queue))
            break
    return found


class IdleDoorbell(threading.Thread):
    def __init__(
        self,
        settings: Settings,
        queues: list[str],
        queue: JobQueue | None = None,
        busy: Callable[[], bool] = lambda: RUNNING.snapshot() is not None,
        pool: Pool | None = None,
        paused: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(name="trainforge-idle-doorbell", daemon=True)
        self._settings, self._queues, self._busy = settings, queues, busy
        self._paused = paused  # this worker consumes nothing now (worker/database_gate.py)
        self._pool = pool or this_worker_pool(settings)
        self._queue = queue or CeleryJobQueue(settings)
        self._factory: sessionmaker[Session] = session_factory(
            settings.resolved_database_url, settings.db_idle_in_transaction_seconds
        )
        self._stop_event = threading.Event()
        self._rung: dict[str, float] = {}  # job id -> monotonic time of our last ring

    def ring_once(self) -> list[str]:
        """Ring for the overdue jobs of this worker's queues; the ids it rang for."""
        if self._busy() or self._paused():
            return []
        interval = self._settings.idle_claim_seconds
        with self._factory() as session:
            free = len(devices.free_devices(session, self._pool))
            due = overdue_jobs(session, self._queues, timedelta(seconds=interval), free)
        now, rang = time.monotonic(), list[str]()
        for job_id, queue in due:
            if now - self._rung.get(job_id, -1e9) < 2 * interval:
                continue  # our last ring is still on its way
            self._queue.publish(job_id, queue)
            self._rung[job_id] = now
            rang.append(job_id)
            log.info("idle with job %s queued in the ledger: rang its doorbell", job_id)
        self._rung = {j: t for j, t in self._rung.items() if now - t < 10 * interval}
        return rang

    def run(self) -> None:
        while not self._stop_event.wait(self._settings.idle_claim_seconds):
            try:
                self.ring_once()
            except Exception:
                log.warning("could not look for queued jobs in the ledger", exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()


def schema_head(settings: Settings) -> str | None:
    """The schema revision this code needs (read from the migration scripts)."""
    url = settings.resolved_database_url
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def database_problem(settings: Settings, head: str | None = None) -> str | None:
    """Why this worker must not consume messages now (None: the database is fine).
    ``head``: :func:`schema_head`, when the caller already read it."""
    url = settings.resolved_database_url
    head = head or schema_head(settings)
    try:
        factory = session_factory(url, settings.db_idle_in_transaction_seconds)
        with factory() as session:
            current = MigrationContext.configure(session.connection()).get_current_revision()
    except SQLAlchemyError as exc:
        return f"the database is unreachable ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    if current != head:
        return (
            f"the database schema is at revision {current}, this worker's code needs {head}: "
            "run `trainforge db upgrade` (or start the matching worker version)"
        )
    return None


def wait_for_database(settings: Settings, every_seconds: float = 5.0) -> None:
    """Block, logging why, until :func:`database_problem` finds none."""
    while (problem := database_problem(settings)) is not None:
        log.error(
            "not consuming any job message: %s; checking again in %gs", problem, every_seconds
        )
        time.sleep(every_seconds)

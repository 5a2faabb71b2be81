"""A worker consumes job messages only while its database is usable (issue 28, finding 12).

A worker whose database is unreachable, or not at its code's schema revision, cannot
claim anything: a message it took would be lost to the workers that could run the job
(their doorbell, swallowed). ``trainforge worker`` waits for a usable database before
it starts consuming (:func:`worker.idle_doorbell.wait_for_database`); after that this
gate checks again every ``TRAINFORGE_DATABASE_CHECK_SECONDS`` (5 s). When the database
breaks, the worker stops consuming its queues -- Celery's own ``cancel_task_queue``,
run in the consumer's loop -- and says why in its log at each check; when the
database is back, it consumes them again (``add_task_queue``). Messages stay in the
broker meanwhile, for the other workers. A message taken in the moment before the
gate noticed goes back to the broker (the task rejects it with ``requeue``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, bootsteps

from api.settings import Settings
from worker.idle_doorbell import database_problem, schema_head

log = logging.getLogger(__name__)


class DatabaseGate(threading.Thread):
    def __init__(self, settings: Settings, queues: list[str]) -> None:
        super().__init__(name="trainforge-database-gate", daemon=True)
        self._settings, self._queues = settings, queues
        self._head = schema_head(settings)
        # Alembic says "Context impl ..." at INFO on every look at the revision: not every 5 s.
        logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
        self._lock = threading.Lock()
        self._consumer: Any = None  # celery.worker.consumer.Consumer, once it started
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self.problem: str | None = None  # why this worker consumes nothing now

    # ------------------------------------------------------------ the consumer side

    def attach(self, consumer: Any) -> None:
        """The consumer started (or restarted): make its queues match the last check."""
        with self._lock:
            self._consumer = consumer
            problem = self.problem
        if problem is not None:
            consumer.call_soon(self._cancel, consumer)

    def detach(self) -> None:
        with self._lock:
            self._consumer = None

    def _cancel(self, consumer: Any) -> None:  # in the consumer's loop
        active = set(consumer.app.amqp.queues.consume_from or {})
        for queue in self._queues:
            if queue in active:
                consumer.cancel_task_queue(queue)

    def _resume(self, consumer: Any) -> None:  # in the consumer's loop
        active = set(consumer.app.amqp.queues.consume_from or {})
        for queue in self._queues:
            if queue not in active:
                consumer.add_task_queue(queue)

    # ------------------------------------------------------------------ the checks

    def check_now(self) -> None:
        """Check at once (a task just met a database error)."""
        self._wake.set()

    def check(self) -> str | None:
        problem = database_problem(self._settings, self._head)
        with self._lock:
            before, self.problem, consumer = self.problem, problem, self._consumer
        if problem is not None:
            log.error("not consuming any job message: %s; checking again in %gs", problem,
                      self._settings.database_check_seconds)  # fmt: skip
            if before is None and consumer is not None:
                consumer.call_soon(self._cancel, consumer)
        elif before is not None:
            log.warning("the database is usable again: consuming %s", ",".join(self._queues))
            if consumer is not None:
                consumer.call_soon(self._resume, consumer)
        return problem

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._wake.wait(self._settings.database_check_seconds)
            self._wake.clear()
            if self._stop_event.is_set():
                break
            try:
                self.check()
            except Exception:
                log.warning("could not check the database", exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()
        self._wake.set()


GATE: list[DatabaseGate] = []  # this process's gate, once `trainforge worker` made it


def current_problem() -> str | None:
    """Why this worker must not take a message now (None: go ahead, or no gate here)."""
    return GATE[0].problem if GATE else None


def report_database_error() -> None:
    if GATE:
        GATE[0].check_now()


class _GateStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Hands the Celery consumer to the gate once its task consumer exists."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c: Any) -> None:
        if GATE:
            GATE[0].attach(c)

    def stop(self, c: Any) -> None:
        if GATE:
            GATE[0].detach()

    def shutdown(self, c: Any) -> None:
        self.stop(c)


def install(app: Celery, settings: Settings, queues: list[str]) -> DatabaseGate:
    """Start this process's gate and wire it into ``app``'s consumer."""
    gate = DatabaseGate(settings, queues)
    GATE[:] = [gate]
    app.steps["consumer"].add(_GateStep)
    gate.start()
    return gate

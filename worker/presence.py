"""The worker's row in ``workers`` (api.ledger.workers): alive while it is renewed, with the
devices it offers and its device pool (which of them are free is read from the running
jobs' reservations, api.ledger.devices, so it is never stale)."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session

from api.db.session import session_factory
from api.ledger import workers
from api.settings import Settings
from worker.devices import this_worker_pool
from worker.metric_sink import with_db_retry

log = logging.getLogger(__name__)


class Presence(threading.Thread):
    def __init__(self, settings: Settings, worker_id: str, queues: str) -> None:
        super().__init__(name="trainforge-presence", daemon=True)
        self._settings, self._worker_id, self._queues = settings, worker_id, queues
        self._stop_event = threading.Event()

    def run(self) -> None:
        factory = session_factory(
            self._settings.resolved_database_url, self._settings.db_idle_in_transaction_seconds
        )
        pool = this_worker_pool(self._settings)  # the devices it offers (issue 27)

        def beat(s: Session) -> None:
            workers.beat(s, self._worker_id, self._queues, pool.devices, pool.name)

        while True:
            try:
                with_db_retry(factory, beat)
            except Exception:
                log.exception("could not record this worker's heartbeat")
            if self._stop_event.wait(self._settings.worker_heartbeat_seconds):
                break
        try:  # a clean stop: not "alive" a moment longer
            with_db_retry(factory, lambda s: workers.leave(s, self._worker_id), attempts=2)
        except Exception:
            log.warning("could not remove this worker's row", exc_info=True)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)

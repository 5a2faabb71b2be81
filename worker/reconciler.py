"""A periodic pass that keeps the ledger and the broker in agreement.

Runs in every ``trainforge worker`` (on by default); passes from several
workers are safe because each change is a conditional UPDATE.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import api.webhooks.repository  # noqa: F401  (wires the webhook outbox to status changes)
from api.db.models import utcnow
from api.db.session import session_factory
from api.ledger import lifecycle
from api.queue import CeleryJobQueue, JobQueue
from api.settings import Settings
from api.teams import audit
from worker.metric_sink import with_db_retry
from worker.sweeps import reconcile_sweeps

log = logging.getLogger(__name__)


def reconcile_once(settings: Settings, queue: JobQueue) -> list[lifecycle.Publish]:
    factory = session_factory(
        settings.resolved_database_url, settings.db_idle_in_transaction_seconds
    )
    after = timedelta(seconds=settings.republish_after_seconds)
    enforce = not settings.unsafe_ignore_max_restarts
    try:
        ended = with_db_retry(
            factory,
            lambda s: lifecycle.end_stalled_sessions(s, utcnow(), settings.stalled_lock_seconds),
        )
        for pid in ended:
            log.warning(
                "reconciler: ended database session %s, frozen inside a transaction on the "
                "row of a job whose lease expired",
                pid,
            )
    except Exception:  # e.g. no privilege to signal: the pass below skips held rows anyway
        log.exception("reconciler: could not end stalled sessions")
    to_publish = with_db_retry(
        factory,
        lambda s: lifecycle.reconcile(s, utcnow(), after, enforce_max_restarts=enforce),
    )
    for item in to_publish:  # after the commit, as for a new job
        log.info("reconciler: publishing job %s to %s", item.job_id, item.queue)
        queue.publish(item.job_id, item.queue)
    if settings.audit_retention_days > 0:  # the audit log's retention
        cutoff = utcnow() - timedelta(days=settings.audit_retention_days)
        try:
            pruned = with_db_retry(factory, lambda s: audit.prune(s, cutoff))
            if pruned:
                log.info("reconciler: deleted %d audit rows older than %s", pruned, cutoff)
        except Exception:
            log.exception("reconciler: could not prune the audit log")
    try:  # sweeps whose trials ended outside a worker (lost, canceled): their next trials
        reconcile_sweeps(factory, queue)
    except Exception:
        log.exception("reconciler: the sweeps pass failed")
    return to_publish


class Reconciler(threading.Thread):
    def __init__(self, settings: Settings, queue: JobQueue | None = None) -> None:
        super().__init__(name="trainforge-reconciler", daemon=True)
        self._settings = settings
        self._queue = queue or CeleryJobQueue(settings)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._settings.reconcile_seconds):
            try:
                reconcile_once(self._settings, self._queue)
            except Exception:
                log.exception("reconciler pass failed")

    def stop(self) -> None:
        self._stop_event.set()

"""A stopping worker hands its job back at once (issue 28, finding 11).

Celery's warm shutdown (SIGTERM, or Ctrl-C in the worker's terminal or on
``trainforge up``) would let the running job train on to its end. Instead the
``worker_shutting_down`` signal sets :data:`STOPPING`; the job's run control reads
it at the next step, the engine saves a checkpoint and returns, and the runner puts
the job back to ``queued`` (reason ``worker_shutdown``, not counted against
``retry.max_restarts``) and rings its doorbell, so a restarted (or another) worker
resumes it at once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_shutting_down

log = logging.getLogger(__name__)

STOPPING = threading.Event()


@worker_shutting_down.connect  # type: ignore[untyped-decorator]
def _on_worker_shutting_down(sig: str | None = None, how: str | None = None, **_: Any) -> None:
    log.info("worker shutting down (%s, %s): handing the running job back", sig, how)
    STOPPING.set()

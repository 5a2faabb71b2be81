"""What each ``trainforge worker`` runs beside its jobs (issue 15): its presence row, the
webhook sender, and (with ``--metrics-port``) its own Prometheus endpoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from api.settings import Settings
from api.webhooks import sweep_hook as _sweep_hook  # noqa: F401 - registers sweep.ended
from worker.log_sink import WORKER_NAME
from worker.presence import Presence
from worker.webhooks import WebhookSender

log = logging.getLogger(__name__)


@dataclass
class Operations:
    presence: Presence
    sender: WebhookSender | None

    def stop(self) -> None:
        if self.sender is not None:
            self.sender.stop()
        self.presence.stop()  # removes this worker's row


def start_operations(settings: Settings, queues: str, metrics_port: int | None) -> Operations:
    presence = Presence(settings, WORKER_NAME, queues)
    presence.start()
    sender = WebhookSender(settings) if settings.webhook_sender else None
    if sender is not None:
        sender.start()
    if metrics_port is not None:
        from worker.metrics_server import serve

        serve(metrics_port, WORKER_NAME)
        log.info("worker metrics on http://0.0.0.0:%d/metrics", metrics_port)
    return Operations(presence, sender)

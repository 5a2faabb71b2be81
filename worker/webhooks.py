"""Sends the webhook outbox (api.webhooks): every ``trainforge worker`` runs a sender thread.

At least once: a delivery row is claimed with a lease (its ``next_attempt_at``
moves ahead), posted, and its outcome recorded; a sender killed in between
leaves the row to be claimed again when the lease ends. A non-2xx answer, a
timeout, a redirect (never followed) or a refused address is a failed attempt,
retried with exponential backoff and jitter up to ``webhook_max_attempts``.
Receivers deduplicate by the ``webhook-id`` header, the same on every attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from functools import partial

import httpx
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import utcnow
from api.db.session import session_factory
from api.settings import Settings
from api.webhooks import repository as repo
from api.webhooks import signing
from api.webhooks.ssrf import RefusedUrl, check_url
from worker.metric_sink import with_db_retry

log = logging.getLogger(__name__)

BATCH = 20  # deliveries claimed per pass
LEASE_PADDING_SECONDS = 30.0  # beyond the worst case of one batch's attempts


def attempt(
    client: httpx.Client, due: repo.Due, allow_private: bool
) -> tuple[int | None, str | None]:
    """POST one delivery; (status code, error) -- error None means accepted (2xx)."""
    try:
        check_url(due.url, allow_private=allow_private)  # DNS may have changed since
    except RefusedUrl as exc:
        return None, f"refused: {exc}"
    body = due.body.encode()
    headers = signing.headers(due.secret, due.id, int(time.time()), body)
    try:
        response = client.post(due.url, content=body, headers=headers)
    except httpx.TimeoutException:
        return None, "timed out"
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if response.is_redirect:
        return response.status_code, "redirects are not followed"
    if not response.is_success:
        return response.status_code, f"HTTP {response.status_code}"
    return response.status_code, None


def deliver_due(
    settings: Settings, factory: sessionmaker[Session], client: httpx.Client
) -> list[tuple[str, str]]:
    """One pass: claim what is due, send it, record each outcome. Returns (id, status)."""
    lease = timedelta(seconds=BATCH * settings.webhook_timeout_seconds + LEASE_PADDING_SECONDS)
    claimed = with_db_retry(factory, lambda s: repo.claim_due(s, utcnow(), BATCH, lease))
    out = []
    for due in claimed:
        started = time.monotonic()
        code, error = attempt(client, due, settings.webhook_allow_private)
        seconds = round(time.monotonic() - started, 3)
        status = with_db_retry(factory, partial(_record, settings, due, code, error, seconds))
        level = logging.INFO if error is None else logging.WARNING
        log.log(level, "webhook %s attempt %d: %s -> %s", due.id, due.attempts + 1,
                error or code, status)  # fmt: skip
        out.append((due.id, status or "gone"))
    return out


def _record(
    settings: Settings,
    due: repo.Due,
    code: int | None,
    error: str | None,
    seconds: float,
    session: Session,
) -> str | None:
    return repo.record_attempt(
        session,
        due.id,
        now=utcnow(),
        status_code=code,
        error=error,
        seconds=seconds,
        max_attempts=settings.webhook_max_attempts,
        retry_base_seconds=settings.webhook_retry_base_seconds,
    )


def http_client(settings: Settings) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(settings.webhook_timeout_seconds),
        follow_redirects=False,
        trust_env=False,  # no proxy from the environment: the SSRF check must see the target
    )


class WebhookSender(threading.Thread):
    def __init__(self, settings: Settings) -> None:
        super().__init__(name="trainforge-webhooks", daemon=True)
        self._settings = settings
        self._stop_event = threading.Event()

    def run(self) -> None:
        factory = session_factory(
            self._settings.resolved_database_url, self._settings.db_idle_in_transaction_seconds
        )
        with http_client(self._settings) as client:
            while not self._stop_event.wait(self._settings.webhook_poll_seconds):
                try:
                    while len(deliver_due(self._settings, factory, client)) == BATCH:
                        pass  # a full batch: more may be due now
                except Exception:
                    log.exception("webhook pass failed")

    def stop(self) -> None:
        self._stop_event.set()

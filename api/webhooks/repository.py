"""Webhook registrations and the outbox: written by the API and the job lifecycle, sent by
workers (worker.webhooks). Imports no FastAPI: api.ledger.repository calls ``enqueue_job_event`` in
the transaction of every status change. Callers own the transaction: nothing here commits.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from api.db.pages import newest_first
from api.ledger import repository as jobs_repo
from api.ledger.models import Job
from api.webhooks.models import Webhook, WebhookDelivery

JOB_EVENTS = {
    "running": "job.started",
    "succeeded": "job.succeeded",
    "failed": "job.failed",
    "canceled": "job.canceled",
}
SWEEP_ENDED = "sweep.ended"
TEST_EVENT = "webhook.test"
EVENT_TYPES = (*JOB_EVENTS.values(), SWEEP_ENDED)


def _body(event_type: str, at: datetime, data: dict[str, Any]) -> str:
    # The Standard Webhooks payload shape: type, timestamp, data.
    payload = {"type": event_type, "timestamp": at.isoformat(), "data": data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def _enqueue(
    session: Session, hooks: list[Webhook], event_type: str, at: datetime, data: dict[str, Any]
) -> list[WebhookDelivery]:
    body = _body(event_type, at, data)
    out = []
    for hook in hooks:
        delivery = WebhookDelivery(
            id=f"msg_{uuid.uuid4().hex}",
            webhook_id=hook.id,
            event_type=event_type,
            job_id=data.get("job_id"),
            body=body,
            status="pending",
            attempts=0,
            next_attempt_at=at,
            created_at=at,
            history=[],
        )
        session.add(delivery)
        out.append(delivery)
    return out


def _subscribed(session: Session, team_id: str, event_type: str) -> list[Webhook]:
    hooks = session.scalars(select(Webhook).where(Webhook.team_id == team_id))
    return [h for h in hooks if event_type in h.events]


@jobs_repo.observe_transitions
def enqueue_job_event(
    session: Session, job_id: str, to_status: str, reason: str | None, attempt: int, at: datetime
) -> None:
    """An outbox row per subscribed webhook, in the status change's own transaction."""
    event_type = JOB_EVENTS.get(to_status)
    if event_type is None:
        return
    job = session.execute(
        select(Job.team_id, Job.name, Job.error).where(Job.id == job_id)
    ).one_or_none()
    if job is None:
        return
    hooks = _subscribed(session, job.team_id, event_type)
    if not hooks:
        return
    data = {
        "job_id": job_id,
        "name": job.name,
        "status": to_status,
        "status_reason": reason,
        "attempt": attempt,
        "error": job.error if to_status == "failed" else None,
    }
    _enqueue(session, hooks, event_type, at, data)


def enqueue_sweep_ended(
    session: Session,
    team_id: str,
    sweep_id: str,
    status: str,
    reason: str | None,
    at: datetime,
    *,
    best_job_id: str | None,
) -> None:
    hooks = _subscribed(session, team_id, SWEEP_ENDED)
    if hooks:
        data = {
            "sweep_id": sweep_id,
            "status": status,
            "status_reason": reason,
            "best_job_id": best_job_id,
        }
        _enqueue(session, hooks, SWEEP_ENDED, at, data)


def enqueue_test(session: Session, hook: Webhook, at: datetime) -> WebhookDelivery:
    data = {"webhook_id": hook.id, "message": "A test delivery from Trainforge."}
    return _enqueue(session, [hook], TEST_EVENT, at, data)[0]


# ------------------------------------------------------------------ registrations


def create_webhook(
    session: Session, team_id: str, url: str, events: list[str], secret: str, key_id: str | None
) -> Webhook:
    hook = Webhook(
        team_id=team_id, url=url, events=sorted(set(events)), secret=secret, created_by_key=key_id
    )
    session.add(hook)
    session.flush()
    return hook


def list_webhooks(session: Session, team_id: str) -> list[Webhook]:
    stmt = select(Webhook).where(Webhook.team_id == team_id).order_by(Webhook.created_at)
    return list(session.scalars(stmt))


def get_webhook(session: Session, team_id: str, webhook_id: str) -> Webhook | None:
    stmt = select(Webhook).where(Webhook.id == webhook_id, Webhook.team_id == team_id)
    return session.scalar(stmt)


def delete_webhook(session: Session, hook: Webhook) -> None:
    # Its pending deliveries go with it (ON DELETE CASCADE; explicit for SQLite pools).
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id))
    session.delete(hook)


def deliveries(
    session: Session, webhook_id: str, limit: int, after: tuple[datetime, str] | None
) -> list[WebhookDelivery]:
    """Newest first; keyset pagination on (created_at, id)."""
    stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    return list(session.scalars(newest_first(stmt, WebhookDelivery, after, limit)))


# ------------------------------------------------------------------ the sender's side


@dataclass(frozen=True)
class Due:
    id: str
    url: str
    secret: str
    body: str
    attempts: int


def claim_due(session: Session, now: datetime, limit: int, lease: timedelta) -> list[Due]:
    """Pending deliveries whose time has come, leased to this sender for ``lease``.

    The lease moves ``next_attempt_at`` forward: a sender that dies mid-attempt
    leaves the row to be claimed again after it (at least once). SKIP LOCKED lets
    several workers' senders claim side by side (PostgreSQL).
    """
    rows = session.execute(
        select(WebhookDelivery, Webhook.url, Webhook.secret)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.status == "pending",
            or_(WebhookDelivery.next_attempt_at.is_(None), WebhookDelivery.next_attempt_at <= now),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(of=WebhookDelivery, skip_locked=True)
    ).all()
    out = []
    for delivery, url, secret in rows:
        delivery.next_attempt_at = now + lease
        out.append(Due(delivery.id, url, secret, delivery.body, delivery.attempts))
    return out


def backoff_seconds(attempts: int, base: float) -> float:
    """After the n-th failed attempt: base·4^(n-1), ±20% jitter (10 s … 43 min for base 10)."""
    return float(base * 4 ** (attempts - 1) * random.uniform(0.8, 1.2))


def record_attempt(
    session: Session,
    delivery_id: str,
    *,
    now: datetime,
    status_code: int | None,
    error: str | None,
    seconds: float,
    max_attempts: int,
    retry_base_seconds: float,
) -> str | None:
    """Store one attempt's outcome; returns the delivery's new status (None: it is gone)."""
    delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if delivery is None or delivery.status != "pending":
        return None if delivery is None else delivery.status
    attempts = delivery.attempts + 1
    ok = error is None and status_code is not None and 200 <= status_code < 300
    entry = {"at": now.isoformat(), "status_code": status_code, "error": error, "seconds": seconds}
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_status_code": status_code,
        "last_error": (error or None) and error[:500],
        "history": [*delivery.history, entry],
    }
    if ok:
        values.update(status="delivered", delivered_at=now, next_attempt_at=None)
    elif attempts >= max_attempts:
        values.update(status="failed", next_attempt_at=None)
    else:
        wait = backoff_seconds(attempts, retry_base_seconds)
        values.update(next_attempt_at=now + timedelta(seconds=wait))
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(values))
    return str(values.get("status", "pending"))

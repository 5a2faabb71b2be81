"""Webhooks: registration (with the SSRF check), team scoping, test deliveries."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.db.models import utcnow
from api.problems import FieldProblem, ProblemError
from api.settings import Settings
from api.teams.repository import Principal
from api.webhooks import repository as repo
from api.webhooks.models import Webhook, WebhookDelivery
from api.webhooks.schemas import (
    DeliveryAttempt,
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryRead,
    WebhookRead,
)
from api.webhooks.signing import new_secret
from api.webhooks.ssrf import RefusedUrl, check_url


def register(
    session: Session, principal: Principal, body: WebhookCreate, settings: Settings
) -> WebhookCreated:
    try:
        check_url(body.url, allow_private=settings.webhook_allow_private)
    except RefusedUrl as exc:
        raise ProblemError(
            422,
            "Unprocessable webhook URL",
            f"url: {exc}",
            errors=[FieldProblem(loc="url", msg=str(exc), type="url_refused")],
        ) from None
    secret = new_secret()
    hook = repo.create_webhook(
        session, principal.team_id, body.url, list(body.events), secret, principal.key_id
    )
    return WebhookCreated(**to_read(hook).model_dump(), secret=secret)


def get_or_404(session: Session, principal: Principal, webhook_id: str) -> Webhook:
    hook = repo.get_webhook(session, principal.team_id, webhook_id)
    if hook is None:
        raise ProblemError(404, "Not found", f"No webhook {webhook_id!r}.")
    return hook


def send_test(session: Session, hook: Webhook) -> WebhookDeliveryRead:
    return delivery_read(repo.enqueue_test(session, hook, utcnow()))


def to_read(hook: Webhook) -> WebhookRead:
    return WebhookRead(
        id=hook.id,
        url=hook.url,
        events=hook.events,
        created_at=hook.created_at,
    )


def delivery_read(d: WebhookDelivery) -> WebhookDeliveryRead:
    return WebhookDeliveryRead(
        id=d.id,
        event_type=d.event_type,
        job_id=d.job_id,
        status=d.status,
        attempts=d.attempts,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
        history=[DeliveryAttempt.model_validate(h) for h in d.history or []],
    )

"""/v1/webhooks: register endpoints for job (and sweep) events; see their deliveries.

Deliveries are sent by the workers from an outbox (never from a request): see
worker/webhooks.py and docs/operations.md.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import SessionDep, SettingsDep
from api.pagination import decode_cursor, encode_cursor
from api.problems import Problem
from api.teams.auth import PrincipalDep
from api.webhooks import repository as repo
from api.webhooks import service
from api.webhooks import sweep_hook as _sweep_hook  # noqa: F401 - registers sweep.ended
from api.webhooks.schemas import (
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryList,
    WebhookDeliveryRead,
    WebhookList,
    WebhookRead,
)

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Missing or invalid API key."},
    404: {"model": Problem, "description": "No such webhook (or another team's)."},
    422: {"model": Problem, "description": "Invalid input; `errors` lists every problem."},
}

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=_ERRORS)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
def create_webhook(
    body: WebhookCreate, session: SessionDep, principal: PrincipalDep, settings: SettingsDep
) -> WebhookCreated:
    """Register a URL for the team's job events; the response's `secret` is shown once.

    A URL that is not http(s), or resolves to a loopback, private, link-local or
    metadata address, is refused (422) unless the operator allows private targets."""
    created = service.register(session, principal, body, settings)
    session.commit()
    return created


@router.get("", response_model=WebhookList)
def list_webhooks(session: SessionDep, principal: PrincipalDep) -> WebhookList:
    """The team's webhooks (without their secrets)."""
    hooks = repo.list_webhooks(session, principal.team_id)
    return WebhookList(items=[service.to_read(h) for h in hooks])


@router.get("/{webhook_id}", response_model=WebhookRead)
def get_webhook(webhook_id: str, session: SessionDep, principal: PrincipalDep) -> WebhookRead:
    """One webhook of the team (without its secret)."""
    return service.to_read(service.get_or_404(session, principal, webhook_id))


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(webhook_id: str, session: SessionDep, principal: PrincipalDep) -> Response:
    """Remove a webhook; its pending deliveries are dropped."""
    repo.delete_webhook(session, service.get_or_404(session, principal, webhook_id))
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{webhook_id}/test", status_code=status.HTTP_202_ACCEPTED, response_model=WebhookDeliveryRead
)
def test_webhook(
    webhook_id: str, session: SessionDep, principal: PrincipalDep
) -> WebhookDeliveryRead:
    """Queue a `webhook.test` delivery; a worker sends it like any other."""
    delivery = service.send_test(session, service.get_or_404(session, principal, webhook_id))
    session.commit()
    return delivery


@router.get("/{webhook_id}/deliveries", response_model=WebhookDeliveryList)
def list_webhook_deliveries(
    webhook_id: str,
    session: SessionDep,
    principal: PrincipalDep,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Newest first, this many.")] = 100,
) -> WebhookDeliveryList:
    """Recent deliveries: status, attempts with their status codes, the next retry."""
    hook = service.get_or_404(session, principal, webhook_id)
    after = decode_cursor(cursor) if cursor else None
    rows = repo.deliveries(session, hook.id, limit + 1, after)
    more, rows = len(rows) > limit, rows[:limit]
    return WebhookDeliveryList(
        items=[service.delivery_read(d) for d in rows],
        next_cursor=encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None,
    )

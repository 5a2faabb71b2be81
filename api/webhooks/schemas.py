"""Webhook requests and responses."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

WebhookEventType = Literal[
    "job.started", "job.succeeded", "job.failed", "job.canceled", "sweep.ended"
]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2000,
        description="http(s) URL that receives a POST per event; it must resolve to a "
        "public address (see docs/operations.md).",
        examples=["https://ci.example.com/hooks/trainforge"],
    )
    events: list[WebhookEventType] = Field(
        min_length=1, max_length=5, description="The events to send (at least one)."
    )


class WebhookRead(BaseModel):
    id: str
    url: str
    events: list[WebhookEventType]
    created_at: datetime


class WebhookCreated(WebhookRead):
    secret: str = Field(
        description="The signing secret (`whsec_<base64>`), shown only in this response. "
        "Verify each delivery's `webhook-signature` with it (Standard Webhooks)."
    )


class WebhookList(BaseModel):
    items: list[WebhookRead]
    next_cursor: str | None = Field(
        None, description="Always null: a team's webhooks come in one page."
    )


class DeliveryAttempt(BaseModel):
    at: datetime
    status_code: int | None = Field(description="The receiver's answer; null: none came back.")
    error: str | None = Field(description="Why the attempt failed, when it did.")
    seconds: float


class WebhookDeliveryRead(BaseModel):
    id: str = Field(description="The `webhook-id` header: the same on every attempt.")
    event_type: str
    job_id: str | None
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None = Field(description="The next try (pending only).")
    created_at: datetime
    delivered_at: datetime | None
    history: list[DeliveryAttempt]


class WebhookDeliveryList(BaseModel):
    items: list[WebhookDeliveryRead]
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` for the next (older) page; null on the last."
    )

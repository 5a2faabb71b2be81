"""The body of /healthz and /readyz."""

from __future__ import annotations

from pydantic import BaseModel, Field


class HealthRead(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)

"""Request and response bodies: every one a named model (clean generated clients)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ml.spec import JobSpec


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"


class StatusReason(StrEnum):
    completed = "completed"
    early_stopped = "early_stopped"
    canceled_by_user = "canceled_by_user"
    non_finite_loss = "non_finite_loss"
    max_runtime_exceeded = "max_runtime_exceeded"
    worker_lost = "worker_lost"
    error = "error"


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: JobSpec
    name: str | None = Field(None, max_length=200, description="A label for humans.")
    priority: int = Field(0, ge=0, le=9, description="Higher runs first within a team.")


class JobProgress(BaseModel):
    epoch: int = Field(description="Epochs completed.")
    epochs: int = Field(description="Epochs the spec asks for.")
    step: int = Field(description="Global optimizer steps done.")


class JobTransitionRead(BaseModel):
    from_status: JobStatus | None
    to_status: JobStatus
    reason: StatusReason | None
    attempt: int
    at: datetime


class JobRead(BaseModel):
    id: str
    name: str | None
    status: JobStatus
    status_reason: StatusReason | None
    error: str | None = Field(description="What went wrong, for a failed job.")
    spec: JobSpec = Field(description="The resolved spec: every default filled in.")
    spec_version: str
    priority: int
    attempt: int = Field(description="Claims so far; the fencing token of the current run.")
    cancel_requested: bool
    progress: JobProgress
    stopped_epoch: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    transitions: list[JobTransitionRead]


class JobPage(BaseModel):
    items: list[JobRead]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class MetricValue(BaseModel):
    step: int
    epoch: int
    value: float | str | None = Field(
        description="A number; non-finite values are the strings `NaN`, `Infinity`, `-Infinity`."
    )


class MetricSeries(BaseModel):
    name: str
    points: list[MetricValue]


class MetricsRead(BaseModel):
    series: list[MetricSeries]


class SpecPlanRead(BaseModel):
    parameter_count: int
    train_samples: int
    validation_samples: int
    steps_per_epoch: int
    total_steps: int
    lr_per_epoch: list[float] | None = Field(
        description="LR at the start of each epoch; null when it depends on metrics."
    )


class SpecValidation(BaseModel):
    spec: JobSpec
    spec_version: str
    plan: SpecPlanRead


class SpecValidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: JobSpec


class HealthRead(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


def spec_json(spec: JobSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")

"""Job list schemas: one small summary per job (no spec, no transitions)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.jobs.schemas import JobProgress, JobStatus, StatusReason


class BestMetric(BaseModel):
    name: str = Field(description="The monitored metric: the spec's `checkpointing.monitor`.")
    value: float | str = Field(
        description="Its best value so far; non-finite values are `NaN`, `Infinity`, `-Infinity`."
    )
    mode: Literal["min", "max"] = Field(description="Which way is better.")


class JobSummary(BaseModel):
    id: str
    name: str | None
    status: JobStatus
    status_reason: StatusReason | None
    progress: JobProgress
    best_metric: BestMetric | None = Field(
        description="The best value of the monitored metric so far; null before its first point."
    )
    sweep_id: str | None = Field(None, description="The sweep this job is a trial of.")
    pack_id: str | None = Field(
        None, description="The pack of sweep trials it last trained in (issue 26); null = alone."
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobSummaryPage(BaseModel):
    items: list[JobSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")

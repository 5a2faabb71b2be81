"""Bodies of the /v1/jobs/{job_id}/checkpoints routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class CheckpointRead(BaseModel):
    id: int
    step: int = Field(description="Global optimizer step the checkpoint was taken at.")
    epoch: int = Field(description="0-based epoch of that step.")
    metrics: dict[str, float | str] = Field(
        description="The metrics at that point; non-finite values as `NaN`, `Infinity`, "
        "`-Infinity`."
    )
    is_best: bool = Field(description="Best kept checkpoint by `checkpointing.monitor`.")
    size_bytes: int = Field(description="Size of the weights file (the download).")
    sha256: str = Field(description="SHA-256 of the weights file.")
    created_at: datetime


class CheckpointPage(BaseModel):
    items: list[CheckpointRead] = Field(description="Oldest first (the last is the latest).")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")

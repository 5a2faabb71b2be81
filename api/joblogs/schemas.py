"""What ``GET /v1/jobs/{job_id}/logs`` and the stream's ``log`` events carry."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.joblogs import repository
from api.joblogs.models import JobLogLine


class JobLogLineRead(BaseModel):
    id: int = Field(description="Increasing per job; pass the last one seen as `after`.")
    at: datetime
    attempt: int = Field(description="The run (attempt) that said it.")
    level: Literal["info", "warning", "error"]
    source: Literal["engine", "worker"] = Field(
        description="`engine`: the training loop; `worker`: the process running it."
    )
    message: str


class JobLogPage(BaseModel):
    items: list[JobLogLineRead]
    last_id: int = Field(
        description="The last line's id (or `after` when there is none): the next `after`."
    )
    next_cursor: str | None = Field(
        description="When more lines are already stored: `last_id` (as text) to pass as "
        "`after`; null when this page reached the newest line."
    )


class JobLogEvent(BaseModel):
    """A batch of log lines, as written (lines trimmed since are left out)."""

    kind: Literal["log"]
    attempt: int
    lines: list[JobLogLineRead]


def line_read(row: JobLogLine) -> JobLogLineRead:
    return JobLogLineRead(
        id=row.id,
        at=row.at,
        attempt=row.attempt,
        level=row.level,
        source=row.source,
        message=row.message,
    )


def log_event_payload(session: Session, job_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A stored ``log`` event (the ids it wrote) as the stream sends it (the lines)."""
    rows = repository.lines_between(session, job_id, payload["first_id"], payload["last_id"])
    return {
        "attempt": payload.get("attempt"),
        "lines": [line_read(r).model_dump(mode="json") for r in rows],
    }

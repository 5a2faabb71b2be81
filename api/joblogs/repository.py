"""Job log lines: written by the worker (fenced by the attempt), read by the API.

Bounded per job: after each write the job keeps its newest ``max_lines`` lines
and the oldest go first. Each write adds one ``log`` event (the ids it wrote)
to the job's event stream, in the same transaction; the stream reads the lines
when it sends the event. Callers own the transaction: nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from api.joblogs.models import JobLogLine
from api.ledger import events
from api.ledger.repository import fence

LOG_EVENT = "log"


class Line(NamedTuple):
    at: datetime
    level: str
    source: str
    message: str


MAX_MESSAGE = 4000  # characters; a longer message (a huge traceback) is cut


def write_lines(
    session: Session,
    job_id: str,
    attempt: int,
    lines: Sequence[Line],
    max_lines: int,
    *,
    fenced: bool = False,
) -> None:
    """Append ``lines`` and their ``log`` event; ``fenced``: the caller already holds the
    job row under the attempt check (e.g. in the status change's own transaction)."""
    if not lines:
        return
    if not fenced:
        fence(session, job_id, attempt)
    rows = [
        {
            "job_id": job_id,
            "attempt": attempt,
            "at": line.at,
            "level": line.level,
            "source": line.source,
            "message": line.message[:MAX_MESSAGE],
        }
        for line in lines
    ]
    ids = list(session.scalars(insert(JobLogLine).returning(JobLogLine.id), rows))
    trim(session, job_id, max_lines)
    events.add_event(
        session, job_id, LOG_EVENT, {"attempt": attempt, "first_id": min(ids), "last_id": max(ids)}
    )


def trim(session: Session, job_id: str, max_lines: int) -> None:
    """Drop the job's oldest lines beyond its newest ``max_lines``."""
    cutoff = session.scalar(
        select(JobLogLine.id)
        .where(JobLogLine.job_id == job_id)
        .order_by(JobLogLine.id.desc())
        .offset(max_lines)
        .limit(1)
    )
    if cutoff is not None:
        session.execute(
            delete(JobLogLine).where(JobLogLine.job_id == job_id, JobLogLine.id <= cutoff)
        )


def lines_after(session: Session, job_id: str, after: int, limit: int) -> list[JobLogLine]:
    stmt = (
        select(JobLogLine)
        .where(JobLogLine.job_id == job_id, JobLogLine.id > after)
        .order_by(JobLogLine.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def lines_between(session: Session, job_id: str, first: int, last: int) -> list[JobLogLine]:
    """The lines of one ``log`` event still kept (older ones may have been trimmed)."""
    stmt = (
        select(JobLogLine)
        .where(JobLogLine.job_id == job_id, JobLogLine.id >= first, JobLogLine.id <= last)
        .order_by(JobLogLine.id)
    )
    return list(session.scalars(stmt))

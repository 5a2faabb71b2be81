"""The metric store: upserts keyed by (job, name, step), fenced by the attempt.

Used by the worker's metric sink (write, and trim on resume) and by the API
(read). Callers own the transaction: nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.ledger import events
from api.ledger.models import MetricPoint
from api.ledger.repository import fence


class Point(NamedTuple):
    # A tuple: the metric sink makes one per value logged, at every step.
    name: str
    step: int
    epoch: int
    value: float


# A metric row as the sink makes it: (name, step, epoch, value). ``Point`` is one.
Row = tuple[str, int, int, float]

# Multi-row upserts, the same text on SQLite (3.24+) and PostgreSQL, handed to the driver
# as is: SQLAlchemy's per-row parameter processing cost more than the database work for
# the batches of small rows a step-level metric stream produces, and one statement per
# _CHUNK rows (not one per row, as executemany) is one parse and one round trip on
# PostgreSQL and one VM run on SQLite instead of hundreds.
_CHUNK = 500  # rows: 3,000 parameters, under SQLite's 32,766 and PostgreSQL's 65,535
_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@lru_cache(maxsize=16)
def _upsert(rows: int, mark: str) -> str:
    row = "(" + ", ".join([mark] * 6) + ")"
    return (
        "INSERT INTO metric_points (job_id, name, step, epoch, value, attempt) "
        f"VALUES {', '.join([row] * rows)} ON CONFLICT (job_id, name, step) DO UPDATE SET "
        "epoch = excluded.epoch, value = excluded.value, attempt = excluded.attempt"
    )


def metrics_payload(points: Sequence[Row]) -> dict[str, Any]:
    """What the ``metrics`` event stores of a batch: per series, the steps it covers.

    Not the points themselves: they are in metric_points already, and copying
    them (as JSON, in the training process) would double the store's cost per
    point. The events endpoint reads the points of these ranges when it sends
    the event. Within one attempt each (name, step) is logged once and steps
    never go back, so a batch's ranges hold exactly its points.
    """
    ranges: dict[str, list[int]] = {}
    for name, step, _epoch, _value in points:
        span = ranges.get(name)
        if span is None:
            ranges[name] = [step, step]
        elif step > span[1]:
            span[1] = step
        elif step < span[0]:
            span[0] = step
    return {"count": len(points), "ranges": ranges}


def write_metrics(session: Session, job_id: str, attempt: int, points: Sequence[Row]) -> None:
    """Upsert a batch keyed by (job, name, step), fenced by the attempt, plus its event.

    NaN is stored as NULL on every backend: SQLite cannot store NaN (it
    becomes NULL anyway), and one encoding keeps both stores and SQL MIN/MAX
    alike. Infinities are stored as they are (both backends keep them). A key
    given twice in one batch: the last value wins, as with one upsert per row.
    """
    if not points:
        return
    fence(session, job_id, attempt)
    conn = session.connection()
    if conn.dialect.name == "postgresql" and len({(p[0], p[1]) for p in points}) < len(points):
        # PostgreSQL refuses to update one row twice in a statement: keep the last.
        points = list({(p[0], p[1]): p for p in points}.values())
    mark = _MARKS[conn.dialect.paramstyle]
    for start in range(0, len(points), _CHUNK):
        chunk = points[start : start + _CHUNK]
        params: list[object] = []
        for name, step, epoch, value in chunk:  # (value != value: NaN)
            params += (job_id, name, step, epoch, None if value != value else value, attempt)
        conn.exec_driver_sql(_upsert(len(chunk), mark), tuple(params))
    # The attempt says which run wrote the batch (a fenced-off one never does).
    events.add_event(
        session, job_id, events.METRICS, {"attempt": attempt, **metrics_payload(points)}
    )


def delete_metrics_after(session: Session, job_id: str, attempt: int, step: int) -> int:
    """A resumed (or restarted) attempt owns every step after its start: drop the old ones.

    The upsert overwrites the steps the new attempt logs again; this removes
    those it might never reach (it may stop earlier), so the series stays one run.
    """
    fence(session, job_id, attempt)
    result = session.execute(
        delete(MetricPoint).where(MetricPoint.job_id == job_id, MetricPoint.step > step)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def read_metrics(
    session: Session,
    job_id: str,
    names: Sequence[str] | None,
    since_step: int | None,
) -> list[MetricPoint]:
    stmt = select(MetricPoint).where(MetricPoint.job_id == job_id)
    if names:
        stmt = stmt.where(MetricPoint.name.in_(list(names)))
    if since_step is not None:
        stmt = stmt.where(MetricPoint.step >= since_step)
    return list(session.scalars(stmt.order_by(MetricPoint.name, MetricPoint.step)))

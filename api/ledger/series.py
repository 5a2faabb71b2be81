"""Reading metric series back, downsampled server-side for charts.

``max_points`` caps the points per series with M4 (Jugel et al., VLDB 2014):
the step range is cut into ``max_points // 4`` equal-width buckets and each
keeps its first, last, lowest and highest point. A line chart drawn from those
is the chart of every point at that many pixels wide, so spikes and
divergence survive. NaN (stored as NULL, see ``api.ledger.metrics.write_metrics``)
takes its bucket's "lowest" slot, so a NaN is never hidden; +inf wins the
"highest" slot like any larger number.

Two ways to compute it, chosen by how many rows a bucket holds:
- large buckets (a million points into a chart): per bucket, one aggregate
  over an index range scan plus a few point lookups, so the database does
  the scanning and only the kept rows cross the wire;
- small buckets: one streamed pass over the rows in Python, since thousands
  of tiny queries would cost more than the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Connection,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
)
from sqlalchemy.orm import Session

from api.ledger.models import MetricPoint

# A point as read back: (step, epoch, value); value None means NaN.
Row = tuple[int, int, float | None]
# Rows per bucket from which the per-bucket SQL beats one pass in Python.
SQL_BUCKET_ROWS = 64


@dataclass(frozen=True)
class Series:
    rows: list[Row]
    total: int  # points stored in the range asked for; more than len(rows) when downsampled

    @property
    def downsampled(self) -> bool:
        return len(self.rows) < self.total


def read_series(
    session: Session,
    job_id: str,
    names: Sequence[str] | None,
    since_step: int | None,
    max_points: int | None = None,
) -> dict[str, Series]:
    """Each series in step order, name by name; above ``max_points`` points, M4-downsampled."""
    where: list[ColumnElement[bool]] = [MetricPoint.job_id == job_id]
    if names:
        where.append(MetricPoint.name.in_(list(names)))
    if since_step is not None:
        where.append(MetricPoint.step >= since_step)
    # Core, not ORM rows: a long series is read without building an object per point.
    conn = session.connection()
    summary = conn.execute(
        select(
            MetricPoint.name,
            func.count(),
            func.min(MetricPoint.step),
            func.max(MetricPoint.step),
        )
        .where(*where)
        .group_by(MetricPoint.name)
        .order_by(MetricPoint.name)
    ).all()
    out: dict[str, Series] = {}
    for name, count, lo, hi in summary:
        one = [*where, MetricPoint.name == name]
        if max_points is None or count <= max_points:
            out[name] = Series(_rows(conn, one), count)
            continue
        buckets = max(1, max_points // 4)
        if count >= SQL_BUCKET_ROWS * buckets:
            rows = _m4_in_sql(conn, one, lo, hi, buckets)
        else:
            rows = _m4(_stream(conn, one), lo, hi, buckets)
        out[name] = Series(rows, count)
    return out


def points_in_ranges(
    session: Session, job_id: str, ranges: dict[str, list[int]]
) -> dict[str, list[Row]]:
    """The points of a ``metrics`` event (see ``api.ledger.metrics.metrics_payload``), by series."""
    if not ranges:
        return {}
    step = MetricPoint.step
    within = or_(
        *(and_(MetricPoint.name == n, step >= lo, step <= hi) for n, (lo, hi) in ranges.items())
    )
    rows = session.connection().execute(
        select(MetricPoint.name, step, MetricPoint.epoch, MetricPoint.value)
        .where(MetricPoint.job_id == job_id, within)
        .order_by(MetricPoint.name, step)
    )
    out: dict[str, list[Row]] = {name: [] for name in ranges}
    for name, at, epoch, value in rows:
        out[name].append((at, epoch, value))
    return out


def _points(where: Sequence[ColumnElement[bool]]) -> Any:
    return select(MetricPoint.step, MetricPoint.epoch, MetricPoint.value).where(*where)


def _rows(conn: Connection, where: Sequence[ColumnElement[bool]]) -> list[Row]:
    return [(r[0], r[1], r[2]) for r in conn.execute(_points(where).order_by(MetricPoint.step))]


def _stream(conn: Connection, where: Sequence[ColumnElement[bool]]) -> Iterable[Row]:
    # A server-side cursor on PostgreSQL; SQLite's cursor streams anyway.
    result = conn.execution_options(stream_results=True, max_row_buffer=20_000).execute(
        _points(where).order_by(MetricPoint.step)
    )
    return ((r[0], r[1], r[2]) for r in result)


def _bounds(lo: int, hi: int, buckets: int, b: int) -> tuple[int, int]:
    # [start, end): exactly the steps with (step - lo) * buckets // span == b, as in _m4.
    span = hi - lo + 1
    return lo - (-span * b // buckets), lo - (-span * (b + 1) // buckets)


def _inline(value: int) -> BindParameter[int]:
    return bindparam(None, value, type_=BigInteger, literal_execute=True)


def _m4_in_sql(
    conn: Connection, where: Sequence[ColumnElement[bool]], lo: int, hi: int, buckets: int
) -> list[Row]:
    step, value = MetricPoint.step, MetricPoint.value
    kept: list[Row] = []
    for b in range(buckets):
        start, end = _bounds(lo, hi, buckets, b)
        # Bounds rendered inline: each bucket's SQL differs, so psycopg never turns it
        # into a server-side prepared statement whose generic plan (a table without
        # statistics yet) can be a sequential scan per bucket.
        rng = [*where, step >= _inline(start), step < _inline(end)]
        first, last, low, high, n, finite = conn.execute(
            select(
                func.min(step),
                func.max(step),
                func.min(value),
                func.max(value),
                func.count(),
                func.count(value),
            ).where(*rng)
        ).one()
        if not n:
            continue
        # The first step holding the bucket's NaN (else its minimum), and its maximum:
        # one more scan of the bucket for both.
        lowest = value.is_(None) if finite < n else value == low
        highest = value == high if finite else value.is_(None)
        at_low, at_high = conn.execute(
            select(func.min(case((lowest, step))), func.min(case((highest, step)))).where(*rng)
        ).one()
        picks = sorted({first, last, at_low, at_high})
        kept.extend(_rows(conn, [*rng, step.in_(picks)]))
    return kept


def _m4(rows: Iterable[Row], lo: int, hi: int, buckets: int) -> list[Row]:
    """The same M4 in one pass over rows in step order (ties: the earliest point)."""
    span = hi - lo + 1
    kept: list[Row] = []
    current = -1
    first: Row = (0, 0, None)
    last, low, high = first, first, first

    def close() -> None:
        kept.extend(sorted({first, last, low, high}))

    for row in rows:
        bucket = (row[0] - lo) * buckets // span
        if bucket != current:
            if current >= 0:
                close()
            current, first, low, high = bucket, row, row, row
        value = row[2]
        if value is None:
            if low[2] is not None:
                low = row
        elif low[2] is not None and value < low[2]:
            low = row
        if value is not None and (high[2] is None or value > high[2]):
            high = row
        last = row
    if current >= 0:
        close()
    return kept

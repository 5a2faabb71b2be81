"""A job's live events, typed: what ``GET /v1/jobs/{id}/events`` streams (Server-Sent Events).

Every event has ``id`` (resume after it with ``Last-Event-ID``) and ``data`` (the JSON as
sent); the typed fields below are read from ``data``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainforge.sdk.sse import Event as RawEvent


@dataclass(frozen=True)
class JobEvent:
    id: int | None
    data: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class StatusEvent(JobEvent):
    """The job moved: ``from_status`` -> ``to_status`` (``reason`` for an end or a retry)."""

    from_status: str | None
    to_status: str
    reason: str | None
    attempt: int


@dataclass(frozen=True)
class ProgressEvent(JobEvent):
    """Within an epoch: ``batch`` of ``steps_per_epoch``, the running ``loss``."""

    epoch: int
    epochs: int
    step: int
    batch: int
    steps_per_epoch: int
    loss: float | None


@dataclass(frozen=True)
class MetricPoint:
    name: str
    step: int
    epoch: int
    value: float | None  # NaN and infinities come as float('nan'), float('inf')


@dataclass(frozen=True)
class MetricsEvent(JobEvent):
    """A batch of metric points (every epoch's end, and periodic flushes)."""

    points: list[MetricPoint]

    def latest(self) -> dict[str, float | None]:
        """The last value of each metric in this batch."""
        return {p.name: p.value for p in self.points}


@dataclass(frozen=True)
class CheckpointEvent(JobEvent):
    checkpoint_id: int
    epoch: int
    step: int
    is_best: bool
    metrics: dict[str, Any]


@dataclass(frozen=True)
class LogEvent(JobEvent):
    lines: list[dict[str, Any]]


@dataclass(frozen=True)
class EndEvent(JobEvent):
    """The last event: the job is ``succeeded``, ``failed`` or ``canceled``."""

    status: str
    status_reason: str | None


@dataclass(frozen=True)
class OtherEvent(JobEvent):
    """An event kind this SDK version does not know (a newer server)."""

    kind: str


def number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):  # "NaN", "Infinity", "-Infinity"
        try:
            return float(value.replace("Infinity", "inf"))
        except ValueError:
            return None
    return None


def points_of(series: list[dict[str, Any]]) -> list[MetricPoint]:
    return [
        MetricPoint(
            str(s.get("name")),
            int(p.get("step", 0)),
            int(p.get("epoch", 0)),
            number(p.get("value")),
        )
        for s in series
        for p in s.get("points") or []
    ]


def typed(event: RawEvent) -> JobEvent:
    d, i = event.data, event.id
    kind = str(d.get("kind") or event.kind)
    if kind == "status":
        return StatusEvent(i, d, d.get("from_status"), str(d.get("to_status")),
                           d.get("reason"), int(d.get("attempt") or 0))  # fmt: skip
    if kind == "progress":
        return ProgressEvent(
            i, d, int(d.get("epoch", 0)), int(d.get("epochs", 0)), int(d.get("step", 0)),
            int(d.get("batch", 0)), int(d.get("steps_per_epoch", 0)), number(d.get("loss")),
        )  # fmt: skip
    if kind == "metrics":
        return MetricsEvent(i, d, points_of(d.get("series") or []))
    if kind == "checkpoint":
        return CheckpointEvent(i, d, int(d.get("id", 0)), int(d.get("epoch", 0)),
                               int(d.get("step", 0)), bool(d.get("is_best")),
                               dict(d.get("metrics") or {}))  # fmt: skip
    if kind == "log":
        return LogEvent(i, d, list(d.get("lines") or []))
    if kind == "end":
        return EndEvent(i, d, str(d.get("status")), d.get("status_reason"))
    return OtherEvent(i, d, kind)


KINDS: dict[type[JobEvent], str] = {
    StatusEvent: "status",
    ProgressEvent: "progress",
    MetricsEvent: "metrics",
    CheckpointEvent: "checkpoint",
    LogEvent: "log",
    EndEvent: "end",
}


def kind_of(event: JobEvent) -> str:
    """The SSE event name (``status``, ``metrics``, ...) of a typed event."""
    if isinstance(event, OtherEvent):
        return event.kind
    return KINDS.get(type(event), "message")

"""What ``follow`` knows about a job, and how it shows it: rich live view, plain lines, JSON."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from trainforge.client.sse import Event

SHOWN = ("loss", "accuracy", "val_loss", "val_accuracy", "lr")


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass
class FollowState:
    job_id: str
    name: str | None
    epochs: int
    status: str = "queued"
    attempt: int = 0
    epochs_done: int = 0
    epoch: int = 0  # 0-based index of the epoch in progress
    step_in_epoch: int = 0
    steps_per_epoch: int | None = None
    running_loss: float | None = None
    latest: dict[str, Any] = field(default_factory=dict)
    checkpoints: list[str] = field(default_factory=list)
    printed: set[tuple[int, int]] = field(default_factory=set)
    end: dict[str, Any] | None = None
    note: str = ""

    @classmethod
    def from_job(cls, job: dict[str, Any]) -> FollowState:
        progress = job.get("progress") or {}
        spec = job.get("spec") or {}
        epochs = int(progress.get("epochs") or spec.get("epochs") or 0)
        return cls(job_id=job["id"], name=job.get("name"), epochs=epochs, status=job["status"])

    def apply(self, event: Event) -> list[str]:
        """Update from one event; returns the lines it is worth a line of its own."""
        d = event.data
        if event.kind == "status":
            self.status, self.attempt = d.get("to_status", self.status), d.get("attempt", 0)
            reason = f" ({d['reason']})" if d.get("reason") else ""
            attempt = f" (attempt {self.attempt})" if self.attempt else ""
            moved = f"{d['from_status']} -> " if d.get("from_status") else ""
            return [f"status {moved}{self.status}{reason}{attempt}"]
        if event.kind == "progress":
            if int(d.get("epoch", 0)) < self.epochs_done:
                return []  # written just after its epoch's metrics: stale
            self.epoch = int(d.get("epoch", self.epoch))
            self.step_in_epoch = int(d.get("batch", 0))
            self.steps_per_epoch = d.get("steps_per_epoch") or self.steps_per_epoch
            loss = d.get("loss")
            self.running_loss = loss if isinstance(loss, float | int) else None
            return []
        if event.kind == "metrics":
            return self._metrics(d)
        if event.kind == "checkpoint":
            best = " (best)" if d.get("is_best") else ""
            line = (f"checkpoint {d.get('id')} at epoch {int(d.get('epoch', 0)) + 1}"
                    f" (step {d.get('step')}){best}")  # fmt: skip
            self.checkpoints.append(line)
            return [line]
        if event.kind == "end":
            self.end = d
            self.status = d.get("status", self.status)
        return []

    def _metrics(self, d: dict[str, Any]) -> list[str]:
        attempt = int(d.get("attempt") or self.attempt or 0)
        by_epoch: dict[int, dict[str, Any]] = {}
        for series in d.get("series", []):
            for point in series.get("points", []):
                by_epoch.setdefault(int(point["epoch"]), {})[series["name"]] = point["value"]
                if series["name"] == "loss" and not self.steps_per_epoch and point.get("step"):
                    # An epoch's points are at its last step: a short job may send no
                    # `progress` event, and its step count is known from here too.
                    self.steps_per_epoch = int(point["step"]) // (int(point["epoch"]) + 1) or None
        lines = []
        for epoch in sorted(by_epoch):
            values = by_epoch[epoch]
            if "loss" not in values or (attempt, epoch) in self.printed:
                continue
            self.printed.add((attempt, epoch))
            self.latest = values
            self.epochs_done = max(self.epochs_done, epoch + 1)
            self.epoch, self.step_in_epoch, self.running_loss = epoch + 1, 0, None
            shown = "  ".join(f"{k} {fmt(values[k])}" for k in SHOWN if k in values)
            lines.append(f"epoch {epoch + 1}/{self.epochs}  {shown}")
        return lines


class View(Protocol):
    def __enter__(self) -> View: ...
    def __exit__(self, *exc: object) -> None: ...
    def show(self, event: Event, lines: list[str]) -> None: ...
    def note(self, text: str) -> None: ...


class PlainView:
    """No terminal: one line per status change, epoch and checkpoint; no control characters."""

    def __init__(self, state: FollowState) -> None:
        self.state = state

    def __enter__(self) -> PlainView:
        name = f" ({self.state.name})" if self.state.name else ""
        print(f"following job {self.state.job_id}{name}: {self.state.status}", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()

    def show(self, event: Event, lines: list[str]) -> None:
        for line in lines:
            print(line, flush=True)

    def note(self, text: str) -> None:
        if text:
            print(text, file=sys.stderr, flush=True)


class JsonView(PlainView):
    """``--json``: every event as one JSON line ``{"id", "event", "data"}``."""

    def __enter__(self) -> JsonView:
        return self

    def show(self, event: Event, lines: list[str]) -> None:
        line = json.dumps({"id": event.id, "event": event.kind, "data": event.data})
        print(line, flush=True)


class LiveView:
    """A terminal: status, a bar over epochs and one over the current epoch's steps, metrics."""

    def __init__(self, state: FollowState) -> None:
        self.state = state
        self.console = Console(highlight=False)
        self.live = Live(
            console=self.console, get_renderable=self.render, refresh_per_second=4, transient=True
        )

    def __enter__(self) -> LiveView:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def show(self, event: Event, lines: list[str]) -> None:
        for line in lines:
            self.console.print(line)
        self.live.refresh()

    def note(self, text: str) -> None:
        self.state.note = text
        self.live.refresh()

    def render(self) -> RenderableType:
        s = self.state
        head = Text.assemble(
            ("job ", "dim"), (s.job_id, "bold"), (f" {s.name}" if s.name else "", ""),
            ("  status ", "dim"), (s.status, "bold"), (f"  attempt {s.attempt}", "dim"),
        )  # fmt: skip
        grid = Table.grid(padding=(0, 1))
        done = min(s.epochs_done, s.epochs) if s.epochs else s.epochs_done
        grid.add_row(
            "epochs", ProgressBar(total=s.epochs or None, completed=done, width=30),
            f"{done}/{s.epochs}",
        )  # fmt: skip
        spe = s.steps_per_epoch
        loss = f"  loss {s.running_loss:.4g}" if s.running_loss is not None else ""
        finished = bool(s.epochs) and s.epochs_done >= s.epochs
        step = (spe or 0) if finished else s.step_in_epoch  # the last epoch stays full
        grid.add_row(
            f"epoch {min(s.epoch + 1, s.epochs) if s.epochs else s.epoch + 1}",
            ProgressBar(total=spe, completed=min(step, spe or 0), width=30),
            f"step {step}/{spe if spe else '?'}{loss}",
        )
        parts: list[RenderableType] = [head, grid]
        if s.latest:
            parts.append(Text("  ".join(f"{k} {fmt(s.latest[k])}" for k in SHOWN if k in s.latest)))
        if s.note:
            parts.append(Text(s.note, style="yellow"))
        return Group(*parts)

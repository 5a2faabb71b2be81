"""``Job``: one training job of your team, as the server last described it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import httpx

from trainforge.sdk.errors import TrainforgeError
from trainforge.sdk.events import EndEvent, JobEvent, MetricPoint, points_of, typed
from trainforge.sdk.reconnect import (
    RECONNECT_FOR,
    STREAM_READ_TIMEOUT,
    OnReconnect,
    Reconnects,
    headers,
    retry_reason,
)
from trainforge.sdk.sse import parse
from trainforge.sdk.transport import Http

if TYPE_CHECKING:  # pandas is optional
    import pandas

TERMINAL = frozenset({"succeeded", "failed", "canceled"})


class JobFields:
    """A job's fields, those of ``GET /v1/jobs/{id}`` at the last read; ``data`` holds the
    whole JSON. Shared by ``Job`` and ``AsyncJob``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __repr__(self) -> str:
        reason = f" ({self.status_reason})" if self.status_reason else ""
        return f"<Job {self.id} {self.name or ''} {self.status}{reason}>".replace("  ", " ")

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def name(self) -> str | None:
        return self.data.get("name")

    @property
    def status(self) -> str:
        """queued, running, succeeded, failed or canceled."""
        return str(self.data.get("status"))

    @property
    def status_reason(self) -> str | None:
        """completed, early_stopped, canceled_by_user, non_finite_loss, ... (None while
        the job runs)."""
        return self.data.get("status_reason")

    @property
    def error(self) -> str | None:
        return self.data.get("error")

    @property
    def progress(self) -> dict[str, Any]:
        return dict(self.data.get("progress") or {})

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def _ended(self, event: EndEvent) -> None:
        self.data["status"] = event.status
        self.data["status_reason"] = event.status_reason


class Job(JobFields):
    """A job. Its fields are those of ``GET /v1/jobs/{id}`` at the last read (``refresh()``
    reads again); ``data`` holds the whole JSON. Jobs from ``client.jobs()`` hold the list's
    summary until refreshed (no ``spec``)."""

    def __init__(self, http: Http, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._http = http

    @property
    def spec(self) -> dict[str, Any]:
        """The resolved spec (every default filled in)."""
        if "spec" not in self.data:
            self.refresh()
        return dict(self.data.get("spec") or {})

    def refresh(self) -> Job:
        self.data = self._http.get(f"/v1/jobs/{self.id}")
        return self

    def cancel(self) -> Job:
        self.data = self._http.post(f"/v1/jobs/{self.id}/cancel")
        return self

    def retry(self) -> Job:
        self.data = self._http.post(f"/v1/jobs/{self.id}/retry")
        return self

    def events(
        self, *, reconnect_for: float = RECONNECT_FOR, on_reconnect: OnReconnect | None = None
    ) -> Generator[JobEvent, None, None]:
        """The job's events from its first, live, until its ``EndEvent`` (included).

        A dropped connection (or a 5xx) is resumed with ``Last-Event-ID``: no event is missed
        or seen twice. ``on_reconnect(reason)`` is called before each new try. After
        ``reconnect_for`` seconds without an event: ``Unreachable``."""
        last_id: int | None = None
        tries = Reconnects(f"the events of job {self.id} at {self._http.config.url}",
                           reconnect_for, on_reconnect)  # fmt: skip
        while True:
            try:
                path = f"/v1/jobs/{self.id}/events"
                with self._http.stream(path, headers(last_id), STREAM_READ_TIMEOUT) as response:
                    for raw in parse(response.iter_lines()):
                        event = typed(raw)
                        last_id = raw.id if raw.id is not None else last_id
                        tries.event()
                        yield event
                        if isinstance(event, EndEvent):
                            self._ended(event)
                            return
                reason = "the stream ended early"
            except (httpx.HTTPError, TrainforgeError) as exc:
                why = retry_reason(exc)
                if why is None:
                    raise
                reason = why
            time.sleep(tries.failed(reason))

    def wait(self, timeout: float | None = None, *, poll: float = 1.0) -> Job:
        """Block until the job ends; returns it, refreshed. ``timeout`` (seconds):
        ``TimeoutError`` when it passes first (the job keeps running)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.refresh().done:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} is still {self.status} after {timeout} s")
            time.sleep(poll if deadline is None else min(poll, deadline - time.monotonic()))
        return self

    def metrics(
        self, name: str | None = None, *, max_points: int | None = None
    ) -> list[MetricPoint]:
        """Every point of the metric ``name`` (all metrics when None), by step."""
        body = self._http.get(f"/v1/jobs/{self.id}/metrics", params=metric_params(name, max_points))
        return points_of(body.get("series") or [])

    def metrics_frame(self) -> pandas.DataFrame:
        """All metrics as a pandas DataFrame: one row per (step, epoch), a column per metric.
        Needs pandas (``pip install pandas``); the SDK does not."""
        return frame_of(self.metrics())

    def checkpoints(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._http.get(
            f"/v1/jobs/{self.id}/checkpoints", params={"limit": 1000}
        )["items"]
        return items

    def download_model(self, path: str | Path = "model.zip") -> Path:
        """The exported model bundle (a zip of ``model.onnx`` and ``model.json``) into
        ``path``, checked against the server's SHA-256. Needs a succeeded job whose export
        is ready."""
        target = Path(path)
        download = Download(self.id, target)
        try:
            with self._http.stream(f"/v1/jobs/{self.id}/model", timeout=300) as response:
                with download.partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        download.write(out, chunk)
                return download.finish(response.headers.get("X-Checksum-Sha256"))
        except httpx.HTTPError as exc:
            download.partial.unlink(missing_ok=True)
            raise self._http.unreachable(exc) from None

    def predict(self, instances: list[Any]) -> list[dict[str, Any]]:
        """Predictions of the job's exported model: a feature mapping per instance (tabular),
        a string (text), or base64 image bytes; one answer each (``label`` and
        ``probabilities``, or ``value``)."""
        body = self._http.post(f"/v1/jobs/{self.id}/predict", json_body={"instances": instances})
        predictions: list[dict[str, Any]] = body["predictions"]
        return predictions

    def delete(self) -> None:
        self._http.request("DELETE", f"/v1/jobs/{self.id}")


def metric_params(name: str | None, max_points: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if name is not None:
        params["name"] = name
    if max_points is not None:
        params["max_points"] = max_points
    return params


def frame_of(points: list[MetricPoint]) -> pandas.DataFrame:
    """Metric points as a DataFrame: one row per (step, epoch), a column per metric."""
    try:
        import pandas
    except ImportError:
        raise ImportError("metrics_frame() needs pandas: pip install pandas") from None
    rows = [{"name": p.name, "step": p.step, "epoch": p.epoch, "value": p.value}
            for p in points]  # fmt: skip
    frame = pandas.DataFrame(rows, columns=["name", "step", "epoch", "value"])
    if frame.empty:
        return pandas.DataFrame(columns=["step", "epoch"])
    wide = frame.pivot_table(index=["step", "epoch"], columns="name", values="value",
                             aggfunc="last", dropna=False)  # fmt: skip
    wide.columns.name = None
    return wide.reset_index()


class Download:
    """A model bundle written to ``<target>.part``, hashed as it comes, then checked against
    the server's SHA-256 and moved into place (nothing is left on a mismatch)."""

    def __init__(self, job_id: str, target: Path) -> None:
        self.job_id, self.target = job_id, target
        self.partial = target.with_name(target.name + ".part")
        self.digest = hashlib.sha256()

    def write(self, out: BinaryIO, chunk: bytes) -> None:
        self.digest.update(chunk)
        out.write(chunk)

    def finish(self, expected: str | None) -> Path:
        if expected and expected != self.digest.hexdigest():
            self.partial.unlink(missing_ok=True)
            raise TrainforgeError(
                f"model of job {self.job_id}: checksum {self.digest.hexdigest()}, the server "
                f"says {expected}; nothing written"
            )
        self.partial.replace(self.target)
        return self.target

"""``AsyncClient``: ``Client``'s twin for asyncio code (httpx.AsyncClient) -- the same
methods as coroutines, a job's events and the job/sweep/dataset lists as async iterators,
the same typed errors, retries and timeouts. Requests are built and answers read by the
same functions as the sync client's (trainforge/sdk/client.py, jobs.py, transport.py)."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from trainforge.sdk.async_transport import AsyncHttp
from trainforge.sdk.client import (
    PAGE_SIZE,
    Client,
    checked_version,
    list_params,
    make_config,
    open_upload,
    picked_id,
    prefix_query,
    upload_form,
)
from trainforge.sdk.errors import TrainforgeError
from trainforge.sdk.events import EndEvent, JobEvent, MetricPoint, points_of, typed
from trainforge.sdk.jobs import Download, JobFields, frame_of, metric_params
from trainforge.sdk.reconnect import (
    RECONNECT_FOR,
    STREAM_READ_TIMEOUT,
    OnReconnect,
    Reconnects,
    headers,
    retry_reason,
)
from trainforge.sdk.sse import aparse
from trainforge.sdk.transport import READ_TIMEOUT, RETRIES

if TYPE_CHECKING:  # pandas is optional
    import pandas

SpecArg = str | os.PathLike[str] | Mapping[str, Any]


async def _pages(http: AsyncHttp, path: str, params: dict[str, Any]) -> AsyncIterator[Any]:
    cursor: str | None = None
    while True:
        page = await http.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        for item in page.get("items") or []:
            yield item
        cursor = page.get("next_cursor")
        if not cursor:
            return


class AsyncJob(JobFields):
    """A job, as ``Job`` with coroutines: ``await job.wait()``, ``async for e in
    job.events()``. ``spec`` is the JSON's as last read (``await job.refresh()`` reads a
    listed job's)."""

    def __init__(self, http: AsyncHttp, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._http = http

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.data.get("spec") or {})

    async def refresh(self) -> AsyncJob:
        self.data = await self._http.get(f"/v1/jobs/{self.id}")
        return self

    async def cancel(self) -> AsyncJob:
        self.data = await self._http.post(f"/v1/jobs/{self.id}/cancel")
        return self

    async def retry(self) -> AsyncJob:
        self.data = await self._http.post(f"/v1/jobs/{self.id}/retry")
        return self

    async def events(
        self, *, reconnect_for: float = RECONNECT_FOR, on_reconnect: OnReconnect | None = None
    ) -> AsyncIterator[JobEvent]:
        """As ``Job.events``: every event until the ``EndEvent`` (included), resumed after a
        dropped connection with ``Last-Event-ID`` (the same policy: reconnect.py)."""
        last_id: int | None = None
        tries = Reconnects(f"the events of job {self.id} at {self._http.config.url}",
                           reconnect_for, on_reconnect)  # fmt: skip
        path = f"/v1/jobs/{self.id}/events"
        while True:
            try:
                async with self._http.stream(
                    path, headers(last_id), STREAM_READ_TIMEOUT
                ) as response:
                    async for raw in aparse(response.aiter_lines()):
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
            await asyncio.sleep(tries.failed(reason))

    async def wait(self, timeout: float | None = None, *, poll: float = 1.0) -> AsyncJob:
        """Until the job ends; returns it, refreshed (``TimeoutError`` after ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (await self.refresh()).done:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} is still {self.status} after {timeout} s")
            await asyncio.sleep(
                poll if deadline is None else min(poll, deadline - time.monotonic())
            )
        return self

    async def metrics(
        self, name: str | None = None, *, max_points: int | None = None
    ) -> list[MetricPoint]:
        params = metric_params(name, max_points)
        body = await self._http.get(f"/v1/jobs/{self.id}/metrics", params=params)
        return points_of(body.get("series") or [])

    async def metrics_frame(self) -> pandas.DataFrame:
        return frame_of(await self.metrics())

    async def checkpoints(self) -> list[dict[str, Any]]:
        body = await self._http.get(f"/v1/jobs/{self.id}/checkpoints", params={"limit": 1000})
        items: list[dict[str, Any]] = body["items"]
        return items

    async def download_model(self, path: str | Path = "model.zip") -> Path:
        """As ``Job.download_model``: the bundle into ``path``, checked by SHA-256."""
        download = Download(self.id, Path(path))
        try:
            async with self._http.stream(f"/v1/jobs/{self.id}/model", timeout=300) as response:
                with download.partial.open("wb") as out:
                    async for chunk in response.aiter_bytes():
                        download.write(out, chunk)
                return download.finish(response.headers.get("X-Checksum-Sha256"))
        except httpx.HTTPError as exc:
            download.partial.unlink(missing_ok=True)
            raise self._http.unreachable(exc) from None

    async def predict(self, instances: list[Any]) -> list[dict[str, Any]]:
        body = await self._http.post(
            f"/v1/jobs/{self.id}/predict", json_body={"instances": instances}
        )
        predictions: list[dict[str, Any]] = body["predictions"]
        return predictions

    async def delete(self) -> None:
        await self._http.request("DELETE", f"/v1/jobs/{self.id}")


class AsyncClient:
    """``Client`` for asyncio: the same arguments and defaults; ``async with AsyncClient()
    as client:`` (or ``await client.aclose()``)."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = READ_TIMEOUT,
        retries: int = RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        config = make_config(url, api_key)
        self.http = AsyncHttp(config, timeout=timeout, retries=retries, transport=transport)
        self.sweeps = AsyncSweeps(self.http)
        self.datasets = AsyncDatasets(self.http)

    @property
    def url(self) -> str:
        return self.http.config.url

    def __repr__(self) -> str:
        return f"<trainforge.AsyncClient {self.url}>"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def server_version(self) -> str:
        return checked_version(str((await self.http.get("/v1/version"))["version"]))

    async def submit(
        self,
        spec: SpecArg,
        *,
        set: Mapping[str, Any] | None = None,
        name: str | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncJob:
        """As ``Client.submit`` (a file or a dict, ``set`` overrides, an Idempotency-Key)."""
        sub = Client._submission(spec, set)
        if name is not None:
            sub.name = name
        if priority is not None:
            sub.priority = priority
        key = idempotency_key or f"sdk-{secrets.token_hex(16)}"
        data = await self.http.post(
            "/v1/jobs", json_body=sub.body(), headers={"Idempotency-Key": key}
        )
        return AsyncJob(self.http, data)

    async def validate(
        self, spec: SpecArg, *, set: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        sub = Client._submission(spec, set)
        result: dict[str, Any] = await self.http.post(
            "/v1/specs/validate", json_body={"spec": sub.spec}
        )
        return result

    async def job(self, job_id: str) -> AsyncJob:
        """One job by its id or a unique prefix of 6+ characters (as ``Client.job``)."""
        params = prefix_query(job_id)
        full = job_id.strip()
        if params is not None:
            full = picked_id(job_id, await self.http.get("/v1/jobs", params=params))
        return AsyncJob(self.http, await self.http.get(f"/v1/jobs/{full}"))

    async def jobs(
        self,
        status: str | None = None,
        *,
        name: str | None = None,
        sweep: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[AsyncJob]:
        """Your team's jobs, newest first, a page at a time: ``async for job in ...``."""
        params = list_params(status=status, name=name, sweep=sweep, page_size=page_size)
        async for item in _pages(self.http, "/v1/jobs", params):
            yield AsyncJob(self.http, item)


class AsyncSweep:
    """A sweep, as ``Sweep`` with coroutines."""

    def __init__(self, http: AsyncHttp, data: dict[str, Any]) -> None:
        self._http, self.data = http, data

    def __repr__(self) -> str:
        return f"<Sweep {self.id} {self.status}>"

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def status(self) -> str:
        return str(self.data.get("status"))

    async def refresh(self) -> AsyncSweep:
        self.data = await self._http.get(f"/v1/sweeps/{self.id}")
        return self

    async def trials(self) -> list[AsyncJob]:
        items = (await self._http.get(f"/v1/sweeps/{self.id}/trials"))["items"]
        return [AsyncJob(self._http, item) for item in items]

    async def cancel(self) -> AsyncSweep:
        self.data = await self._http.post(f"/v1/sweeps/{self.id}/cancel")
        return self


class AsyncSweeps:
    def __init__(self, http: AsyncHttp) -> None:
        self._http = http

    async def create(
        self, spec: SpecArg, parameters: Mapping[str, Any], **fields: Any
    ) -> AsyncSweep:
        sub = Client._submission(spec, None)
        body = {"spec": sub.spec, "parameters": dict(parameters), **fields}
        return AsyncSweep(self._http, await self._http.post("/v1/sweeps", json_body=body))

    async def get(self, sweep_id: str) -> AsyncSweep:
        return AsyncSweep(self._http, await self._http.get(f"/v1/sweeps/{sweep_id}"))

    async def __aiter__(self) -> AsyncIterator[AsyncSweep]:
        async for item in _pages(self._http, "/v1/sweeps", {"limit": PAGE_SIZE}):
            yield AsyncSweep(self._http, item)


class AsyncDatasets:
    def __init__(self, http: AsyncHttp) -> None:
        self._http = http

    async def upload(
        self,
        data: Any,
        *,
        label: str | None = None,
        name: str | None = None,
        format: str | None = None,
        **fields: str,
    ) -> dict[str, Any]:
        """As ``Datasets.upload``: a DataFrame or a file (read here, sent by httpx)."""
        form, file = upload_form(data, label, name, format, fields)
        if not isinstance(file, Path):
            return dict(await self._http.post("/v1/datasets", data=form, files={"file": file}))
        with open_upload(file) as handle:
            upload = {"file": (file.name, handle, "application/octet-stream")}
            return dict(await self._http.post("/v1/datasets", data=form, files=upload))

    async def get(self, dataset_id: str) -> dict[str, Any]:
        return dict(await self._http.get(f"/v1/datasets/{dataset_id}"))

    async def delete(self, dataset_id: str) -> None:
        await self._http.request("DELETE", f"/v1/datasets/{dataset_id}")

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        async for item in _pages(self._http, "/v1/datasets", {"limit": PAGE_SIZE}):
            yield item

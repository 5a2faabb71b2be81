"""``AsyncHttp``: ``Http`` (trainforge/sdk/transport.py) on ``httpx.AsyncClient`` -- the same
timeouts, the same retry decisions (the functions of transport.py), the same typed errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from trainforge.sdk.config import Config
from trainforge.sdk.errors import Unreachable
from trainforge.sdk.transport import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    RETRIES,
    USER_AGENT,
    error_for,
    is_idempotent,
    rewind,
    timeout_of,
    wait_after_answer,
    wait_after_failure,
)


class AsyncHttp:
    """An ``httpx.AsyncClient`` bound to one server and key, with ``Http``'s retries."""

    def __init__(
        self,
        config: Config,
        *,
        timeout: float = READ_TIMEOUT,
        retries: int = RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.config = config
        self.retries = retries
        headers = {"User-Agent": user_agent}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self.timeout = httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))
        self._client = httpx.AsyncClient(
            base_url=config.url, headers=headers, timeout=self.timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def unreachable(self, exc: Exception) -> Unreachable:
        reason = str(exc) or type(exc).__name__
        return Unreachable(f"cannot reach Trainforge at {self.config.url} ({reason})")

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        files: Any = None,
        data: Any = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send; a success is returned, an error answer raised as its typed exception."""
        idempotent = is_idempotent(method, headers)
        extra = timeout_of(timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._client.request(
                    method, path, params=params, json=json_body, headers=headers,
                    files=files, data=data, timeout=extra,
                )  # fmt: skip
            except httpx.HTTPError as exc:
                delay = wait_after_failure(exc, attempt, self.retries, idempotent)
                if delay is None:
                    raise self.unreachable(exc) from None
                rewind(files)
                await asyncio.sleep(delay)
                continue
            delay = wait_after_answer(response, attempt, self.retries, idempotent)
            if delay is not None:
                rewind(files)
                await asyncio.sleep(delay)
                continue
            if response.is_error:
                raise error_for(response)
            return response

    async def get(self, path: str, **kwargs: Any) -> Any:
        return (await self.request("GET", path, **kwargs)).json()

    async def post(self, path: str, **kwargs: Any) -> Any:
        return (await self.request("POST", path, **kwargs)).json()

    @asynccontextmanager
    async def stream(
        self, path: str, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> AsyncIterator[httpx.Response]:
        """A streamed GET, no retries (see ``Http.stream``)."""
        extra = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT) if timeout else self.timeout
        async with self._client.stream("GET", path, headers=headers, timeout=extra) as response:
            if response.is_error:
                await response.aread()
                raise error_for(response)
            yield response

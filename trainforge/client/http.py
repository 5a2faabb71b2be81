"""The one HTTP client of the CLI: every answer that is not a success becomes a CliError."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from trainforge.client.config import Config
from trainforge.client.errors import EXIT_INVALID, EXIT_UNREACHABLE, CliError

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def problem_lines(response: httpx.Response) -> list[str]:
    """An RFC 9457 problem as lines: every field error as ``loc: msg``, else its detail."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = response.text.strip().splitlines()
        return [f"HTTP {response.status_code}: {text[0] if text else response.reason_phrase}"]
    errors = body.get("errors") or []
    lines = [f"{e.get('loc') or '(body)'}: {e.get('msg')}" for e in errors if isinstance(e, dict)]
    if lines:
        return lines
    detail = body.get("detail") or body.get("title") or response.reason_phrase
    return [str(detail)]


def unreachable(config: Config, exc: Exception) -> CliError:
    reason = str(exc) or type(exc).__name__
    return CliError(
        EXIT_UNREACHABLE,
        f"cannot reach Trainforge at {config.url} ({reason}); "
        "is the server running? Set TRAINFORGE_URL or run `trainforge login --url URL`.",
    )


def error_for(config: Config, response: httpx.Response) -> CliError:
    lines = problem_lines(response)
    status = response.status_code
    if status in (401, 403):
        return CliError(
            EXIT_UNREACHABLE,
            f"the server at {config.url} refused the API key from {config.key_source} "
            f"({status}: {lines[0]}); set TRAINFORGE_API_KEY or run `trainforge login`.",
            http_status=status,
        )
    if status >= 500:
        return CliError(
            EXIT_UNREACHABLE, f"the server at {config.url} failed: {lines[0]}", http_status=status
        )
    return CliError(EXIT_INVALID, "\n".join(lines), http_status=status)


class Api:
    def __init__(self, config: Config, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        headers = {"User-Agent": "trainforge-cli"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._client = httpx.Client(
            base_url=config.url, headers=headers, timeout=TIMEOUT, transport=transport
        )

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        files: Any = None,
        data: Any = None,
    ) -> httpx.Response:
        try:
            response = self._client.request(
                method,
                path,
                params=params,
                json=json_body,
                headers=headers,
                files=files,
                data=data,
            )
        except httpx.HTTPError as exc:
            raise unreachable(self.config, exc) from None
        if response.is_error:
            raise error_for(self.config, response)
        return response

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs).json()

    @contextmanager
    def stream(
        self, path: str, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> Iterator[httpx.Response]:
        """A streamed GET; transport errors are left to the caller (follow reconnects)."""
        extra = httpx.Timeout(timeout, connect=5.0) if timeout is not None else TIMEOUT
        with self._client.stream("GET", path, headers=headers, timeout=extra) as response:
            if response.is_error:
                response.read()
                raise error_for(self.config, response)
            yield response


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False)

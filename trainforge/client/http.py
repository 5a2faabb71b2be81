"""The CLI's view of the SDK's HTTP client (trainforge/sdk/transport.py): the same requests,
with every failure turned into a CliError (a message and an exit code, no traceback)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from trainforge.client.errors import EXIT_INVALID, EXIT_UNREACHABLE, CliError
from trainforge.sdk.config import Config
from trainforge.sdk.errors import ApiError, TrainforgeError, Unreachable
from trainforge.sdk.transport import Http, problem_lines

__all__ = ["Api", "dumps", "error_for", "problem_lines", "unreachable"]


def unreachable(config: Config, exc: Exception) -> CliError:
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, Unreachable):
        reason = exc.message.rpartition(" (")[2].removesuffix(")") or reason
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


def cli_error(config: Config, exc: TrainforgeError) -> CliError:
    """An SDK exception as the CLI reports it."""
    if isinstance(exc, Unreachable):
        return unreachable(config, exc)
    if isinstance(exc, ApiError) and exc.response is not None:
        return error_for(config, exc.response)
    return CliError(EXIT_INVALID, exc.message)


class Api:
    def __init__(self, config: Config, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.http = Http(config, transport=transport, user_agent="trainforge-cli")

    def close(self) -> None:
        self.http.close()

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
            return self.http.request(
                method, path, params=params, json_body=json_body, headers=headers,
                files=files, data=data,
            )  # fmt: skip
        except TrainforgeError as exc:
            raise cli_error(self.config, exc) from None

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs).json()

    @contextmanager
    def stream(
        self, path: str, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> Iterator[httpx.Response]:
        """A streamed GET; transport errors are left to the caller (follow reconnects)."""
        try:
            with self.http.stream(path, headers, timeout) as response:
                yield response
        except ApiError as exc:
            raise cli_error(self.config, exc) from None


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False)

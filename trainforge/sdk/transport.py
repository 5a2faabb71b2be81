"""The one HTTP client of the code base (the SDK's, and through it the CLI's).

Timeouts: 5 s to connect, 30 s to read an answer (``Client(timeout=...)`` changes both).
Retries (``Client(retries=3)``): a request that could not connect is sent again, whatever
its method (nothing reached the server); a GET -- and a job submit, which carries an
Idempotency-Key -- is also sent again after a read timeout or a 502, 503 or 504 answer.
Waits between tries: 0.5 s, 1 s, 2 s, ... (at most 8 s), or the server's ``Retry-After``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from trainforge.sdk.config import Config
from trainforge.sdk.errors import (
    ApiError,
    Conflict,
    InvalidSpec,
    NotFound,
    ServerError,
    TrainforgeError,
    Unauthorized,
    Unreachable,
)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
RETRIES = 3
RETRY_STATUSES = frozenset({502, 503, 504})
USER_AGENT = "trainforge-python"


def problem_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def problem_lines(response: httpx.Response) -> list[str]:
    """An RFC 9457 problem as lines: every field error as ``loc: msg``, else its detail."""
    body = problem_of(response)
    if not isinstance(body, dict):
        text = response.text.strip().splitlines()
        return [f"HTTP {response.status_code}: {text[0] if text else response.reason_phrase}"]
    lines = [f"{loc}: {msg}" for loc, msg in field_errors(body)]
    if lines:
        return lines
    detail = body.get("detail") or body.get("title") or response.reason_phrase
    return [str(detail)]


def field_errors(body: dict[str, Any]) -> list[tuple[str, str]]:
    errors = body.get("errors") or []
    return [
        (str(e.get("loc") or "(body)"), str(e.get("msg"))) for e in errors if isinstance(e, dict)
    ]


def error_for(response: httpx.Response) -> ApiError:
    """The typed exception for an error answer."""
    status, body = response.status_code, problem_of(response)
    lines = problem_lines(response)
    message = "\n".join(lines)
    kwargs: dict[str, Any] = {"status": status, "problem": body}
    error: ApiError
    if status in (400, 422):
        errors = field_errors(body) if isinstance(body, dict) else []
        error = InvalidSpec(message, errors or [("(body)", lines[0])], **kwargs)
    elif status == 404:
        error = NotFound(message, **kwargs)
    elif status == 409:
        error = Conflict(message, **kwargs)
    elif status in (401, 403):
        error = Unauthorized(message, **kwargs)
    elif status >= 500:
        error = ServerError(message, **kwargs)
    else:
        error = ApiError(message, **kwargs)
    error.response = response
    return error


class Http:
    """An ``httpx.Client`` bound to one server and key, with the retries above."""

    def __init__(
        self,
        config: Config,
        *,
        timeout: float = READ_TIMEOUT,
        retries: int = RETRIES,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.config = config
        self.retries = retries
        headers = {"User-Agent": user_agent}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self.timeout = httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))
        self._client = httpx.Client(
            base_url=config.url, headers=headers, timeout=self.timeout, transport=transport
        )

    def close(self) -> None:
        self._client.close()

    def unreachable(self, exc: Exception) -> Unreachable:
        reason = str(exc) or type(exc).__name__
        return Unreachable(f"cannot reach Trainforge at {self.config.url} ({reason})")

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
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send; a success is returned, an error answer raised as its typed exception."""
        idempotent = is_idempotent(method, headers)
        extra = timeout_of(timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._client.request(
                    method, path, params=params, json=json_body, headers=headers,
                    files=files, data=data, timeout=extra,
                )  # fmt: skip
            except httpx.HTTPError as exc:
                delay = wait_after_failure(exc, attempt, self.retries, idempotent)
                if delay is None:
                    raise self.unreachable(exc) from None
                rewind(files)
                time.sleep(delay)
                continue
            delay = wait_after_answer(response, attempt, self.retries, idempotent)
            if delay is not None:
                rewind(files)
                time.sleep(delay)
                continue
            if response.is_error:
                raise error_for(response)
            return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs).json()

    @contextmanager
    def stream(
        self, path: str, headers: Mapping[str, str] | None = None, timeout: float | None = None
    ) -> Iterator[httpx.Response]:
        """A streamed GET, no retries: transport errors (``httpx.HTTPError``) are left to the
        caller, which knows where to resume; an error answer is raised typed."""
        extra = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT) if timeout else self.timeout
        with self._client.stream("GET", path, headers=headers, timeout=extra) as response:
            if response.is_error:
                response.read()
                raise error_for(response)
            yield response


def is_idempotent(method: str, headers: Mapping[str, str] | None) -> bool:
    return method == "GET" or bool(headers and "Idempotency-Key" in headers)


def wait_after_failure(
    exc: httpx.HTTPError, attempt: int, retries: int, idempotent: bool
) -> float | None:
    """Seconds to wait before sending again after a transport failure; None: give up."""
    if attempt > retries:
        return None
    if isinstance(exc, httpx.ConnectError):  # nothing reached the server
        return _backoff(attempt)
    if isinstance(exc, httpx.TimeoutException) and idempotent:
        return _backoff(attempt)
    return None


def wait_after_answer(
    response: httpx.Response, attempt: int, retries: int, idempotent: bool
) -> float | None:
    """Seconds to wait before sending again after this answer (a 502/503/504 to a request
    that may be repeated); None: the answer stands."""
    if response.status_code in RETRY_STATUSES and idempotent and attempt <= retries:
        return _retry_after(response) or _backoff(attempt)
    return None


def timeout_of(timeout: float | None) -> Any:
    return (
        httpx.USE_CLIENT_DEFAULT
        if timeout is None
        else httpx.Timeout(timeout, connect=CONNECT_TIMEOUT)
    )


def _backoff(attempt: int) -> float:
    return float(min(0.5 * 2 ** (attempt - 1), 8.0))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return min(float(value), 30.0) if value.isdigit() else None


def rewind(files: Any) -> None:
    """A retried upload sends its file again from the start."""
    if isinstance(files, Mapping):
        for item in files.values():
            handle = item[1] if isinstance(item, tuple) and len(item) > 1 else item
            if hasattr(handle, "seek"):
                handle.seek(0)


__all__ = ["Http", "TrainforgeError", "error_for", "problem_lines"]

"""The SDK's exceptions: one class per thing a caller may want to handle on its own.

Every one is a ``TrainforgeError``; those that come from an HTTP answer carry ``status`` (the
HTTP status) and ``problem`` (the RFC 9457 body as a dict, ``{}`` when there was none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


class TrainforgeError(Exception):
    """Anything the SDK raises on purpose."""

    def __init__(self, message: str, *, status: int | None = None, problem: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.problem: dict[str, Any] = problem if isinstance(problem, dict) else {}


class InvalidInput(TrainforgeError, ValueError):
    """Something the caller passed cannot be sent: a spec file that does not parse, a bad
    ``set`` path. Raised before any request."""


class AmbiguousId(InvalidInput):
    """A short id that starts more than one id of your team; ``candidates`` lists them."""

    def __init__(self, message: str, candidates: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.candidates = candidates


class ApiError(TrainforgeError):
    """The server answered with an error status that no subclass below names."""

    response: httpx.Response | None = None  # the answer itself, read


class InvalidSpec(ApiError, ValueError):
    """422 (or 400): ``errors`` lists every problem as ``(loc, msg)`` pairs, e.g.
    ``("spec.optimizer.lr", "Input should be greater than 0")``."""

    def __init__(self, message: str, errors: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.errors = errors


class NotFound(ApiError, LookupError):
    """404: no such job, dataset, sweep... in your team (another team's is a 404 too)."""


class Conflict(ApiError):
    """409: the resource is not in a state that allows this (a running job's delete, a
    dataset a job still uses, an Idempotency-Key reused with another body)."""


class Unauthorized(ApiError, PermissionError):
    """401/403: the API key is missing, wrong, expired or revoked, or lacks the role."""


class ServerError(ApiError):
    """5xx after the retries (see ``Client``): the server failed."""


class Unreachable(TrainforgeError, ConnectionError):
    """No answer: the server is down, the URL is wrong, or a timeout passed (after retries).
    ``reason``: the last failure, as the transport said it."""

    def __init__(self, message: str, *, reason: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason

"""Spec files and ``--set`` overrides for the CLI: the SDK's (trainforge/sdk/specfile.py),
with its InvalidInput turned into a CliError (exit 2)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from trainforge.client.errors import EXIT_INVALID, CliError
from trainforge.sdk import specfile as _sdk
from trainforge.sdk.errors import InvalidInput
from trainforge.sdk.specfile import Submission, to_yaml

__all__ = ["Submission", "apply_overrides", "apply_set", "load", "parse_set", "to_yaml"]
T = TypeVar("T")


@contextmanager
def _as_cli_error() -> Iterator[None]:
    try:
        yield
    except InvalidInput as exc:
        raise CliError(EXIT_INVALID, exc.message) from None


def _wrap(func: Callable[..., T], *args: Any) -> T:
    with _as_cli_error():
        return func(*args)
    raise AssertionError("unreachable")  # pragma: no cover - for mypy


def load(path: Path) -> Submission:
    return _wrap(_sdk.load, path)


def parse_set(expr: str) -> tuple[list[str | int], Any]:
    return _wrap(_sdk.parse_set, expr)


def apply_set(spec: dict[str, Any], expr: str) -> None:
    _wrap(_sdk.apply_set, spec, expr)


def apply_overrides(sub: Submission, sets: list[str]) -> None:
    _wrap(_sdk.apply_overrides, sub, sets)

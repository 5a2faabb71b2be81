"""Printing: JSON for scripts, rich tables for people, errors on stderr."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from trainforge.client.config import resolve
from trainforge.client.errors import EXIT_INVALID, CliError
from trainforge.client.http import Api as Api  # re-exported: tests swap it for a mock
from trainforge.client.http import cli_error
from trainforge.sdk.client import MIN_PREFIX, resolve_job_id
from trainforge.sdk.errors import AmbiguousId, TrainforgeError


def stdout() -> Console:
    # Not a terminal (a pipe, a file): no width limit, so ids are never cut.
    width = None if sys.stdout.isatty() else 10_000
    return Console(highlight=False, soft_wrap=False, width=width)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


JSON_OPT = Annotated[bool, typer.Option("--json", help="Print the API's JSON (for scripts).")]


def when(value: Any) -> str:
    """Every date the CLI prints, one way: ``2026-12-07 04:30:11`` (UTC, as the API sends)."""
    return str(value)[:19].replace("T", " ") if value else "-"


def confirm(question: str, yes: bool) -> None:
    """Ask on a terminal (``--yes`` skips it); a script (no terminal) is not asked."""
    if yes or not sys.stdin.isatty():
        return
    if not typer.confirm(question, default=False):
        raise CliError(EXIT_INVALID, "nothing deleted")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def table(columns: list[str], rows: list[list[str]]) -> None:
    out = Table(box=None, pad_edge=False, header_style="bold")
    for i, name in enumerate(columns):
        out.add_column(name, no_wrap=i == 0)  # the id column is never cut
    for row in rows:
        out.add_row(*row)
    stdout().print(out)


def connect() -> Api:
    """The API the environment points at (see trainforge.client.config)."""
    return Api(resolve())


def epoch_label(epoch: int | None) -> str:
    """The API's 0-based epoch as people count it (Keras prints `Epoch 1/10` first)."""
    return "-" if epoch is None else str(epoch + 1)


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def full_job_id(text: str) -> str:
    """A job id from what the user typed: the id, or its first 6+ characters when they are
    unique in the team (ambiguous: exit 2, the candidates listed)."""
    if len(text) < MIN_PREFIX or len(text) >= 32:
        return text
    api = connect()
    try:
        return resolve_job_id(api.http, text)
    except AmbiguousId as exc:
        raise CliError(EXIT_INVALID, exc.message) from None
    except TrainforgeError as exc:
        raise cli_error(api.config, exc) from None


JOB_ARG = Annotated[
    str,
    typer.Argument(
        metavar="JOB",
        help="A job id, or its first 6+ characters.",
        callback=lambda text: full_job_id(text) if isinstance(text, str) else text,
    ),
]

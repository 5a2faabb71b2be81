"""Parse a `trainforge` command line with the real typer app, without running it: the
command's path and its parsed values (what argparse's parse_args gave these tests)."""

from __future__ import annotations

from typing import Any

import typer

from trainforge.entry import app


def parse(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("trainforge", list(argv))
    path: list[str] = []
    while hasattr(command, "commands"):  # a group
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, sub, args = command.resolve_command(ctx, rest)
        assert name is not None and sub is not None, argv
        path.append(name)
        ctx = sub.make_context(name, args, parent=ctx)
        command = sub
    return path, ctx.params


def help_text(argv: list[str]) -> str:
    """`trainforge ARGV --help`'s text."""
    from typer.testing import CliRunner

    done = CliRunner().invoke(app, [*argv, "--help"])
    assert done.exit_code == 0, done.output
    return done.output

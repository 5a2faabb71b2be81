"""The user verbs of ``trainforge``: one typer app, a module per group of verbs.

Adding a verb (``predict``, ``logs``, ``sweep``, ...): write ``trainforge/client/<name>.py``
with ``def register(app: typer.Typer) -> None`` that adds its commands (``app.command()(fn)``,
or ``app.add_typer(sub, name="sweep")`` for a group), and add ``"<name>"`` to ``VERB_MODULES``
below -- that one line is all. Speak HTTP through ``output.connect()`` (an ``Api``), raise
``CliError(code, message)`` for anything a user can get wrong (no tracebacks), and print
``--json`` output with ``output.print_json``. Exit codes are in ``errors.py``.
"""

from __future__ import annotations

import importlib
import sys

import typer

from trainforge.client.errors import EXIT_DETACHED, EXIT_INVALID, CliError
from trainforge.sdk.errors import TrainforgeError

VERB_MODULES = (
    "jobs_cmd",  # submit, validate, jobs, show, cancel, retry
    "follow_cmd",  # follow
    "results_cmd",  # metrics, checkpoints, download
    "datasets_cmd",  # datasets upload / ls
    "login_cmd",  # login
    "logs_cmd",  # logs [-f] (issue 15)
    "model_cmd",  # predict, export (issue 14)
    "sweep_cmd",  # sweep submit [--follow] / show / ls / cancel (issue 13)
    "storage_cmd",  # delete (issue 17)
    "report_cmd",  # report (issue 24)
    "webhooks_cmd",  # webhooks ls / add / rm / test (issue 25)
)

OPERATOR_HELP = "Operator commands (up, api, worker, db, admin): `trainforge up --help`, ..."

app = typer.Typer(
    name="trainforge",
    help="Submit training jobs to Trainforge, follow them live, get their results.",
    epilog=OPERATOR_HELP,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, ...)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", is_eager=True, help="The client's and the server's versions."
    ),
) -> None:
    if version:
        from trainforge.client.version_cmd import print_versions

        print_versions()
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:  # bare `trainforge`: the help, and success
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


for _name in VERB_MODULES:
    importlib.import_module(f"trainforge.client.{_name}").register(app)


def main(argv: list[str] | None = None) -> int:
    """Run a user verb; returns the exit code (see trainforge.client.errors)."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    try:
        result = command.main(args=args, prog_name="trainforge", standalone_mode=False)
    except CliError as exc:
        print(f"trainforge: {exc.message}", file=sys.stderr, flush=True)
        return exc.code
    except TrainforgeError as exc:  # raised by the SDK outside a request (a config file)
        print(f"trainforge: {exc.message}", file=sys.stderr, flush=True)
        return EXIT_INVALID
    except (typer.Abort, KeyboardInterrupt):
        print("\ntrainforge: interrupted", file=sys.stderr, flush=True)
        return EXIT_DETACHED
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:  # usage errors: bad options, unknown verbs
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        return EXIT_INVALID
    return result if isinstance(result, int) else 0

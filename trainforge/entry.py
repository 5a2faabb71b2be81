"""The ``trainforge`` console script: one typer app, the user verbs (trainforge/client) and
the operator verbs (trainforge/operator_cmd.py; they need ``trainforge[server]``)."""

from __future__ import annotations

import sys

from trainforge import operator_cmd
from trainforge.client.app import app
from trainforge.client.app import main as client_main

operator_cmd.register(app)


def main(argv: list[str] | None = None) -> int:
    return client_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())

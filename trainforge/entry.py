"""The ``trainforge`` console script: user verbs need the client alone; operator verbs (up,
api, worker, db, admin) need the server, ``pip install 'trainforge[server]'``."""

from __future__ import annotations

import sys

OPERATOR_VERBS = frozenset({"up", "api", "worker", "db", "admin"})
SERVER_MODULES = frozenset(
    ("fastapi", "sqlalchemy", "celery", "torch", "uvicorn", "alembic", "pydantic_settings")
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in OPERATOR_VERBS:
        try:
            from trainforge.cli import main as operator_main
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in SERVER_MODULES:
                raise
            print(
                f"trainforge {args[0]}: this install is the client only (no {exc.name}); "
                "the server is `pip install 'trainforge[server]'`.",
                file=sys.stderr,
            )
            return 2
        return operator_main(args)
    from trainforge.client.app import main as client_main

    return client_main(args)


if __name__ == "__main__":
    sys.exit(main())

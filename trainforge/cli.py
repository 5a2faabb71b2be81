"""The ``trainforge`` command: operator verbs (up, api, worker, db, admin) here; user verbs
(submit, follow, jobs, ...) in trainforge/client."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from api.settings import Settings, get_settings
from trainforge.admin_cli import add_admin_parser


def _print(msg: str) -> None:
    print(msg, flush=True)


def ensure_bootstrap_key(settings: Settings) -> str | None:
    """First start of the embedded mode: a `default` team and an admin key, written 0600."""
    from api.db.keys import DEFAULT_TEAM, count_keys, create_api_key, get_or_create_team
    from api.db.session import session_factory

    with session_factory(settings.resolved_database_url)() as session:
        if count_keys(session):
            return None
        team = get_or_create_team(session, DEFAULT_TEAM)
        _, raw = create_api_key(session, team, "admin", name="bootstrap")
        key_file = settings.home / "api-key"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(raw + "\n")
        os.chmod(key_file, 0o600)
        session.commit()
        return raw


def cmd_db_upgrade(_: argparse.Namespace) -> int:
    from api.db.migrate import upgrade

    settings = get_settings()
    settings.ensure_home()
    upgrade(settings.resolved_database_url)
    _print("database is at head")
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from api.serving import HTTP_PROTOCOL

    settings = get_settings()
    settings.ensure_home()
    processes = args.processes or settings.api_processes
    if processes > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _shared_metrics_dir(settings.home / "api-metrics")
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=processes,
        http=HTTP_PROTOCOL,  # TCP_NODELAY on every connection, whatever the socket's origin
        log_level="info",
        timeout_graceful_shutdown=5,
    )
    return 0


def _process_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 64")
    return int(text)


def _shared_metrics_dir(folder: Path) -> None:
    """One /metrics for all API processes: prometheus-client's multiprocess mode, in a
    folder emptied at start (its files from an earlier run would count again)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)  # inherited by the processes


def cmd_worker(args: argparse.Namespace) -> int:
    from worker import threads

    settings = get_settings()
    settings.ensure_home()
    from worker.celery_app import app
    from worker.reconciler import Reconciler

    if settings.torch_threads is not None:
        # Several workers on one small machine: one thread each beats oversubscription.
        import torch

        torch.set_num_threads(settings.torch_threads)
    else:
        threads.start_meter()  # each job: as many threads as cores other work leaves free
    if settings.unsafe_no_fencing:
        from api.db.jobs import disable_fencing_for_fault_tests

        print(
            "WARNING: TRAINFORGE_UNSAFE_NO_FENCING is set: stale writes are accepted. "
            "This exists for the fault-injection tests only.",
            file=sys.stderr,
            flush=True,
        )
        disable_fencing_for_fault_tests()
    if settings.reconciler and not settings.unsafe_no_republish:
        Reconciler(settings).start()
    from worker.queues import worker_queues

    queues = worker_queues(settings, args.queues)  # the GPU queue only where there is one
    from worker.idle_doorbell import IdleDoorbell, wait_for_database

    # No message is taken before the database is reachable and at this code's schema.
    wait_for_database(settings)
    if settings.idle_claim_seconds > 0 and not settings.unsafe_no_republish:
        IdleDoorbell(settings, queues.split(",")).start()  # a lost doorbell costs seconds
    from worker.operations import start_operations

    operations = start_operations(settings, queues, args.metrics_port)  # issue 15
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            "--concurrency=1",
            f"--queues={queues}",
            f"--hostname=trainforge-{socket.gethostname()}-{os.getpid()}@%h",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    operations.stop()
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Embedded mode: migrate, bootstrap a key, run the API and one worker until Ctrl-C."""
    settings = get_settings()
    home = settings.home.resolve()
    settings.ensure_home()
    from api.db.migrate import upgrade

    upgrade(settings.resolved_database_url)
    raw = ensure_bootstrap_key(settings)
    if raw:
        _print(f"Bootstrap admin API key (also in {home / 'api-key'}):\n{raw}")
    else:
        _print(f"API key: see {home / 'api-key'}")
    env = {**os.environ, "TRAINFORGE_HOME": str(home)}
    exe = [sys.executable, "-m", "trainforge.cli"]
    children = [
        subprocess.Popen([*exe, "api", "--host", args.host, "--port", str(args.port)], env=env),
        subprocess.Popen([*exe, "worker"], env=env),
    ]
    _print(f"Trainforge API on http://{args.host}:{args.port} (Ctrl-C stops)")
    stopping = False

    def _stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stopping and all(c.poll() is None for c in children):
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 0 if stopping else 1


def cmd_admin(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from api.db import admin

    url = get_settings().resolved_database_url
    try:
        return admin.run_cli(args)
    except (DBAPIError, ArgumentError) as exc:
        # One line, not a traceback: which database, and what chooses it.
        try:
            shown = make_url(url).render_as_string(hide_password=True)
        except ArgumentError:
            shown = url
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(
            f"trainforge admin: cannot use the database {shown} ({reason}); "
            "TRAINFORGE_HOME (SQLite in it) or TRAINFORGE_DATABASE_URL choose it, and "
            "`trainforge db upgrade` creates its tables.",
            file=sys.stderr,
        )
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainforge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="embedded mode: API + one worker, SQLite, no servers")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.set_defaults(func=cmd_up)

    api = sub.add_parser("api", help="the HTTP API alone")
    api.add_argument("--host", default="0.0.0.0")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument(
        "--processes",
        type=_process_count,
        metavar="N",
        help="API processes on the port (1-64; default TRAINFORGE_API_PROCESSES, 1)",
    )
    api.set_defaults(func=cmd_api)

    wk = sub.add_parser("worker", help="one Celery worker (one per GPU)")
    wk.add_argument(
        "--queues",
        help="comma-separated; default: TRAINFORGE_QUEUE, plus TRAINFORGE_GPU_QUEUE when "
        "this process sees a GPU (a GPU queue is dropped on a machine without one)",
    )
    wk.add_argument(
        "--metrics-port", type=int, help="serve this worker's Prometheus /metrics (default: off)"
    )
    wk.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate to the latest schema").set_defaults(
        func=cmd_db_upgrade
    )

    add_admin_parser(sub, cmd_admin)  # trainforge/admin_cli.py (issue 17)
    return parser


OPERATOR_VERBS = frozenset({"up", "api", "worker", "db", "admin"})


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if not args_in or args_in[0] not in OPERATOR_VERBS:
        # The user verbs (submit, follow, jobs, ...): trainforge/client, HTTP only.
        from trainforge.client.app import main as client_main

        return client_main(args_in)
    args = build_parser().parse_args(args_in)
    try:
        get_settings()
    except ValidationError as exc:  # a TRAINFORGE_* variable: a message, not a traceback
        print(f"trainforge {args_in[0]}: {_settings_problems(exc)}", file=sys.stderr)
        return 2
    return int(args.func(args))


def _settings_problems(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        if error["loc"]:
            name = "TRAINFORGE_" + "_".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{name}={error.get('input')!r}: {error['msg']}")
        else:  # a rule across several settings
            problems.append(str(error["msg"]))
    return "; ".join(problems)


if __name__ == "__main__":
    sys.exit(main())

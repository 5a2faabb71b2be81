"""The work of the operator verbs (up, api, worker, db upgrade, admin): their options are
in trainforge/operator_cmd.py, on the same typer app as the user verbs (trainforge/client).
This module ships in the server distribution (trainforge-server), the options in the client."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from api.settings import Settings, get_settings


def _print(msg: str) -> None:
    print(msg, flush=True)


def ensure_bootstrap_key(settings: Settings) -> str | None:
    """First start of the embedded mode: a `default` team and an admin key, written 0600."""
    from api.db.session import session_factory
    from api.teams.repository import DEFAULT_TEAM, count_keys, create_api_key, get_or_create_team

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

    from api.nodelay_protocol import HTTP_PROTOCOL

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


def _shared_metrics_dir(folder: Path) -> None:
    """One /metrics for all API processes: prometheus-client's multiprocess mode, in a
    folder emptied at start (its files from an earlier run would count again)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)  # inherited by the processes


def cmd_worker(args: argparse.Namespace) -> int:
    from worker import torch_threads as threads

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
        from api.ledger.repository import disable_fencing_for_fault_tests

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

    # No message is taken before the database is reachable and at this code's schema,
    # nor while it is not later on (the gate stops and resumes consuming; issue 28).
    wait_for_database(settings)
    from worker.database_gate import install

    gate = install(app, settings, queues.split(","))
    if settings.idle_claim_seconds > 0 and not settings.unsafe_no_republish:
        # A lost doorbell costs seconds; a worker that consumes nothing rings none.
        paused = lambda: gate.problem is not None  # noqa: E731
        IdleDoorbell(settings, queues.split(","), paused=paused).start()
    from worker.sidecars import start_operations

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
    gate.stop()
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
    exe = [sys.executable, "-m", "trainforge"]
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

    import api.webhooks.repository  # noqa: F401  (wires the webhook outbox to status changes)
    from api.teams import admin_service as admin

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


def run_operator(
    verb: str, func: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """An operator verb's work, after checking the TRAINFORGE_* settings (a bad one: a
    message naming it and exit 2, not a traceback). The options are parsed by the one
    typer app (trainforge/operator_cmd.py)."""
    try:
        get_settings()
    except ValidationError as exc:
        print(f"trainforge {verb}: {_settings_problems(exc)}", file=sys.stderr)
        return 2
    return int(func(args))


def _settings_problems(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        if error["loc"]:
            name = "TRAINFORGE_" + "_".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{name}={error.get('input')!r}: {error['msg']}")
        else:  # a rule across several settings
            problems.append(str(error["msg"]))
    return "; ".join(problems)

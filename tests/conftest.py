"""Shared fixtures: SQLite for unit tests; the machine's real PostgreSQL and Redis for
the integration and e2e tiers. In CI (CI=true) a missing service fails the run."""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.app import create_app
from api.db.migrate import upgrade
from api.db.session import session_factory
from api.settings import Settings
from api.teams.repository import DEFAULT_TEAM, create_api_key, get_or_create_team

# A request a test sends without its own timeout waits up to a minute, not httpx's 5 s: on
# a starved CI host a listing once took longer than 5 s to answer, and the run failed on a
# test that measures no latency. The tests that bound a latency set their own timeouts and
# bounds (and run `alone`). Every httpx default timeout is this one object.
for _phase in ("connect", "read", "write", "pool"):
    setattr(httpx._config.DEFAULT_TIMEOUT_CONFIG, _phase, 60.0)

# The test session is one long-lived process like a worker: cuBLAS latches this at its first
# call, so a deterministic CUDA test after any other CUDA test needs it from the start.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

PG_ADMIN_URL = os.environ.get(
    "TRAINFORGE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TRAINFORGE_TEST_REDIS", "redis://127.0.0.1:6379/0")
REPO = Path(__file__).resolve().parents[1]


# Tiers by cost. A test's directory gives its tier where the whole directory is one
# (tests/e2e, tests/integration, tests/faults); elsewhere a test that starts a process or
# a server says so with @pytest.mark.e2e, one that trains or exports for more than a
# second with @pytest.mark.slow; one that uses the pg_url or redis_url fixture is
# `integration`. Every other test is `unit`: no subprocess, no server, no
# network, no npm, no PostgreSQL or Redis; `make unit` runs exactly those.
TIER_OF_DIRECTORY = {
    "e2e": ("e2e",),
    "integration": ("integration",),
    "faults": ("integration", "faults"),
}
NOT_UNIT = {"integration", "e2e", "slow", "faults", "gpu"}


# Where pytest-xdist hands out whole files in collection order (`make test`'s server tier:
# --dist loadfile --no-loadscope-reorder), the costliest files go first: one that starts
# `trainforge up` or workers takes 10-100 s, most others a few, and a long file handed out
# last is the run's tail while the other processes sit idle. A file's cost is its
# costliest test's tier, in this order; files of one cost keep their collection order.
COSTLIEST_FIRST = ("e2e", "faults", "slow", "integration")


def _cost_rank(item: pytest.Item) -> int:
    names = {m.name for m in item.iter_markers()}
    return next((i for i, n in enumerate(COSTLIEST_FIRST) if n in names), len(COSTLIEST_FIRST))


@pytest.hookimpl(tryfirst=True)  # before -m deselects on the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent
    for item in items:
        parts = item.path.relative_to(tests_dir).parts
        for marker in TIER_OF_DIRECTORY.get(parts[0], ()) if len(parts) > 1 else ():
            item.add_marker(marker)
        if {"pg_url", "redis_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker("integration")  # a real PostgreSQL or Redis, wherever it lives
        if not NOT_UNIT & {m.name for m in item.iter_markers()}:
            item.add_marker("unit")
    if config.getoption("dist", "no") == "loadfile" and not config.getoption(
        "loadscopereorder", True
    ):
        rank: dict[Path, int] = {}
        for item in items:
            rank[item.path] = min(rank.get(item.path, len(COSTLIEST_FIRST)), _cost_rank(item))
        items.sort(key=lambda item: rank[item.path])  # stable: each file's own order kept


def service_missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is not reachable; CI needs it (see README, Development)")
    pytest.skip(f"{what} is not reachable")


@dataclass
class FakeQueue:
    """Records publishes; checks the job row is committed before the doorbell rings."""

    settings: Settings
    published: list[tuple[str, str]] = field(default_factory=list)
    committed_before_publish: list[bool] = field(default_factory=list)

    def publish(self, job_id: str, queue: str) -> None:
        from api.ledger.models import Job

        with session_factory(self.settings.resolved_database_url)() as session:
            self.committed_before_publish.append(session.get(Job, job_id) is not None)
        self.published.append((job_id, queue))

    def ping(self) -> None:
        return None


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated to head, once per test session (per xdist worker): each
    test's ``settings`` copies it instead of running Alembic again."""
    template = tmp_path_factory.mktemp("template") / "trainforge.db"
    upgrade(f"sqlite:///{template}")
    with sqlite3.connect(template) as conn:  # everything in the main file, no -wal beside it
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return template


@pytest.fixture
def settings(tmp_path: Path, migrated_sqlite: Path) -> Settings:
    s = Settings(
        home=tmp_path / "home",
        heartbeat_seconds=0.2,
        metrics_flush_seconds=0.5,
        api_openapi_warm_up=False,  # ~0.5 s of CPU per app: most tests never need it
    )
    s.ensure_home()  # creates the database file owner-only (600); the copy keeps the mode
    shutil.copyfile(migrated_sqlite, s.home / "trainforge.db")
    return s


@pytest.fixture
def fake_queue(settings: Settings) -> FakeQueue:
    return FakeQueue(settings)


@pytest.fixture
def admin_key(settings: Settings) -> str:
    with session_factory(settings.resolved_database_url)() as session:
        team = get_or_create_team(session, DEFAULT_TEAM)
        _, raw = create_api_key(session, team, "admin")
        session.commit()
    return raw


@pytest.fixture
def client(settings: Settings, fake_queue: FakeQueue, admin_key: str) -> Iterator[TestClient]:
    app = create_app(settings, queue=fake_queue)
    with TestClient(app, headers={"Authorization": f"Bearer {admin_key}"}) as c:
        yield c


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test session."""
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        with admin.connect() as conn:
            name = f"tf_test_{secrets.token_hex(4)}"
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:  # noqa: BLE001
        service_missing("PostgreSQL at 127.0.0.1:5432")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    from api.db.session import engine_for

    engine_for.cache_clear()
    admin.dispose()  # the fault suite may have restarted PostgreSQL meanwhile
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception:  # noqa: BLE001
        service_missing("Redis at 127.0.0.1:6379")
    return REDIS_URL


# Ports for the servers the tests start. `bind(0)` drew them from the kernel's ephemeral
# range, which every outgoing connection draws from too, and two test processes could draw
# the same port between choosing it and their server binding it: in a rehearsal one `up`
# lost its port to another test's server, whose /readyz answered, and the test's submits
# got that server's 401s. Each test process now takes ports in turn from a slice of its
# own, below the ephemeral range (32768-60999 on Linux by default): xdist worker gwN the
# Nth, a run without xdist (the fault tests beside the server tier) the last.
PORT_BASE, PORT_SLICE, PORT_SLICES = 20_000, 500, 24
_ports: Iterator[int] | None = None


def _port_slice() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        return int(worker[2:]) % (PORT_SLICES - 1)
    return PORT_SLICES - 1


def free_port() -> int:
    global _ports
    if _ports is None:
        start = PORT_BASE + _port_slice() * PORT_SLICE
        _ports = itertools.cycle(range(start, start + PORT_SLICE))
    for _ in range(PORT_SLICE):
        port = next(_ports)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # still held: a server of this process, or a socket in TIME_WAIT
            return port
    raise RuntimeError(f"no free port in this process's slice from {PORT_BASE}")

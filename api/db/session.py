"""Engine and session factory, shared by the API and the worker."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from api.settings import get_settings


@dataclass(frozen=True)
class PoolSize:
    """A pool that never makes a thread wait: ``size`` at least the threads that may
    hold a connection at once (the API: request slots + stream threads)."""

    size: int
    timeout_seconds: float


DEFAULT_POOL = PoolSize(size=20, timeout_seconds=30.0)  # the worker: a few threads


def make_engine(
    url: str,
    idle_in_transaction_seconds: float | None = None,
    lock_timeout_seconds: float | None = None,
    pool: PoolSize | None = None,
) -> Engine:
    pool = pool or DEFAULT_POOL
    # No overflow: a connection past the pool is a wait (up to the timeout, then
    # sqlalchemy's TimeoutError, a 503 in the API), not an unbounded fan-out.
    sizing: dict[str, Any] = {
        "pool_size": pool.size,
        "max_overflow": 0,
        "pool_timeout": pool.timeout_seconds,
    }
    if url.startswith("sqlite"):
        if url in ("sqlite://", "sqlite:///:memory:"):
            sizing = {}  # in memory: SQLAlchemy's one-connection-per-thread pool, unsized
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            hide_parameters=True,  # a failed statement's values (secret_hash) are never logged
            **sizing,
        )
        synchronous = get_settings().sqlite_synchronous.upper()

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the API read while the worker writes; foreign keys are off by default.
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # Under WAL, NORMAL syncs at checkpoints, not at every commit: a commit
            # survives the process (kill -9, a crash) but the last ones before a power
            # loss or kernel crash may roll back -- never a corrupt file. FULL (the
            # setting) syncs every commit. README, "Durability on SQLite".
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    options = []
    if idle_in_transaction_seconds is not None:
        # A process that stalls inside a transaction (SIGSTOP, a VM pause, a hung
        # client) would hold its row locks for ever, and the reconciler's takeover
        # and a user's cancel would wait behind them. The server ends such a session
        # instead; our transactions are milliseconds long, never held across training.
        options.append(f"idle_in_transaction_session_timeout={_ms(idle_in_transaction_seconds)}")
    if lock_timeout_seconds is not None:
        # Past it a statement fails (an OperationalError: the API answers 503).
        options.append(f"lock_timeout={_ms(lock_timeout_seconds)}")
    connect_args = {"options": " ".join(f"-c {o}" for o in options)} if options else {}
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args=connect_args,
        hide_parameters=True,  # a failed statement's values (secret_hash) are never logged
        **sizing,
    )


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


@lru_cache(maxsize=8)
def engine_for(
    url: str,
    idle_in_transaction_seconds: float | None = None,
    lock_timeout_seconds: float | None = None,
    pool: PoolSize | None = None,
) -> Engine:
    return make_engine(url, idle_in_transaction_seconds, lock_timeout_seconds, pool)


def session_factory(
    url: str,
    idle_in_transaction_seconds: float | None = None,
    lock_timeout_seconds: float | None = None,
    pool: PoolSize | None = None,
) -> sessionmaker[Session]:
    """Sessions on a shared engine per (url, timeouts, pool); the timeouts apply to
    PostgreSQL."""
    engine = engine_for(url, idle_in_transaction_seconds, lock_timeout_seconds, pool)
    return sessionmaker(engine, expire_on_commit=False)

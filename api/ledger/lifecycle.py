"""The job state machine and the reconciler's queries.

Every status change is a conditional UPDATE that names the state it leaves,
so two actors racing on one job cannot both win. The SQL row is the ledger;
the broker is only the doorbell, which the reconciler rings again when a
message may have been lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, text, update
from sqlalchemy.orm import Session

from api.ledger import repository as repo
from api.ledger.models import Job

# (from, to): every transition a job may take. Anything else is a bug.
TRANSITIONS: frozenset[tuple[str | None, str]] = frozenset(
    {
        (None, "queued"),
        ("queued", "running"),
        ("queued", "canceled"),
        ("running", "succeeded"),
        ("running", "failed"),
        ("running", "canceled"),
        ("running", "queued"),  # the worker was lost; resume from the latest checkpoint
        ("failed", "queued"),  # retry
        ("canceled", "queued"),  # retry
    }
)


class InvalidTransition(Exception):
    pass


def check_transition(from_status: str | None, to_status: str) -> None:
    if (from_status, to_status) not in TRANSITIONS:
        raise InvalidTransition(f"{from_status} → {to_status}")


@dataclass(frozen=True)
class Publish:
    job_id: str
    queue: str


def _expired_leases(session: Session, now: datetime, enforce_max_restarts: bool) -> list[Publish]:
    """Running jobs whose worker stopped renewing: requeue, fail or finish canceling."""
    rows = session.execute(
        select(Job.id, Job.attempt, Job.restarts, Job.max_restarts, Job.cancel_requested, Job.queue)
        .where(Job.status == "running", Job.lease_expires_at < now)
        # A row another transaction holds (a frozen writer) is left for a later pass
        # rather than stalling this one (PostgreSQL; SQLite has one writer anyway).
        .with_for_update(skip_locked=True)
    ).all()
    out: list[Publish] = []
    for row in rows:
        values: dict[str, Any]
        # Same attempt and still expired: nobody renewed or re-claimed it meanwhile.
        where = (
            Job.id == row.id,
            Job.status == "running",
            Job.attempt == row.attempt,
            Job.lease_expires_at < now,
        )
        if row.cancel_requested:
            to, reason, error = "canceled", "canceled_by_user", None
            values = {"finished_at": now}
        elif enforce_max_restarts and row.restarts >= row.max_restarts:
            to, reason = "failed", "worker_lost"
            error = (
                f"The worker running this job was lost {row.restarts + 1} time(s); "
                f"retry.max_restarts is {row.max_restarts}. If it keeps dying (out of "
                "memory?), lower batch_size or model size, then retry."
            )
            values = {"finished_at": now}
        else:
            to, reason, error = "queued", "worker_lost", None
            values = {"restarts": Job.restarts + 1, "published_at": now}
        check_transition("running", to)
        result = session.execute(
            update(Job)
            .where(*where)
            .values(
                status=to,
                status_reason=reason,
                error=error,
                lease_expires_at=None,
                updated_at=now,
                **values,
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            continue
        repo.record_transition(session, row.id, "running", to, reason, row.attempt)
        if to == "queued":
            out.append(Publish(row.id, row.queue))
    return out


def _unanswered_queued(session: Session, now: datetime, after: timedelta) -> list[Publish]:
    """Queued jobs whose message may be gone (Redis restarted without persistence)."""
    cutoff = now - after
    rows = session.execute(
        select(Job.id, Job.queue)
        .where(
            Job.status == "queued",
            Job.cancel_requested.is_(False),
            or_(Job.published_at.is_(None), Job.published_at < cutoff),
        )
        .with_for_update(skip_locked=True)
    ).all()
    out: list[Publish] = []
    for row in rows:
        result = session.execute(
            update(Job)
            .where(
                Job.id == row.id,
                Job.status == "queued",
                or_(Job.published_at.is_(None), Job.published_at < cutoff),
            )
            .values(published_at=now)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            out.append(Publish(row.id, row.queue))
    return out


# Sessions whose open transaction holds the row of a job whose lease has expired,
# and has for longer than any transaction of ours takes (PostgreSQL: the row's xmax
# is the locker's transaction id while that transaction is open).
_STALLED_HOLDERS = text(
    "SELECT DISTINCT a.pid FROM jobs j "
    "JOIN pg_locks l ON l.locktype = 'transactionid' AND l.transactionid = j.xmax "
    "AND l.mode = 'ExclusiveLock' AND l.granted "
    "JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE j.status = 'running' AND j.lease_expires_at < :now "
    "AND a.xact_start < now() - make_interval(secs => :seconds) "
    "AND a.pid <> pg_backend_pid() AND a.datname = current_database()"
)


def stalled_lock_holders(session: Session, now: datetime, held_seconds: float) -> list[int]:
    """PostgreSQL backends frozen inside a transaction on an expired-lease job's row.

    A worker stopped mid-write (SIGSTOP, a paused VM, a hung pipeline) keeps the
    job's row lock, and the takeover's UPDATE would wait behind it for ever;
    ``idle_in_transaction_session_timeout`` does not fire for a session stopped in
    the middle of a pipelined statement. The reconciler ends these sessions.
    """
    if session.get_bind().dialect.name != "postgresql":
        return []  # SQLite: one writer at a time, and its busy timeout bounds the wait
    rows = session.execute(_STALLED_HOLDERS, {"now": now, "seconds": held_seconds})
    return [int(pid) for (pid,) in rows]


def end_stalled_sessions(session: Session, now: datetime, held_seconds: float) -> list[int]:
    """pg_terminate_backend each of ``stalled_lock_holders``: their transactions roll
    back, their locks go, and a worker that wakes up later is fenced off by the new
    attempt. Needs the same database role as the workers (or pg_signal_backend)."""
    ended = []
    for pid in stalled_lock_holders(session, now, held_seconds):
        if session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar():
            ended.append(pid)
    return ended


def reconcile(
    session: Session,
    now: datetime,
    republish_after: timedelta,
    *,
    enforce_max_restarts: bool = True,
) -> list[Publish]:
    """One pass; the caller commits, then publishes what is returned."""
    return _expired_leases(session, now, enforce_max_restarts) + _unanswered_queued(
        session, now, republish_after
    )

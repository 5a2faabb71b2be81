"""The jobs repository: every status change is a conditional UPDATE.

Used by the API (create, read, cancel) and by the worker (claim, heartbeat,
finish, fence). Metrics live in api.ledger.metrics. Callers own the transaction:
nothing here commits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, insert, select, true, update
from sqlalchemy.orm import Session

from api.db.models import new_id, table, utcnow
from api.ledger import events
from api.ledger.models import Job, JobTransition

TERMINAL = frozenset({"succeeded", "failed", "canceled"})


_FENCING = {"on": True}

# (session, job id, to status, reason, attempt, at): called in the status change's own
# transaction. The webhook outbox registers itself (api.webhooks.repository), so the
# store imports no domain package (issue 22) and a change is never committed without it.
TransitionObserver = Callable[[Session, str, str, str | None, int, datetime], None]
_OBSERVERS: list[TransitionObserver] = []


def observe_transitions(observer: TransitionObserver) -> TransitionObserver:
    if observer not in _OBSERVERS:
        _OBSERVERS.append(observer)
    return observer


def disable_fencing_for_fault_tests() -> None:
    """Fault-injection tests only (TRAINFORGE_UNSAFE_NO_FENCING): stale writes go through,
    to prove the fault suite notices when the fence is gone."""
    _FENCING["on"] = False


def _is_current(attempt: int) -> ColumnElement[bool]:
    return Job.attempt == attempt if _FENCING["on"] else true()


class StaleAttempt(Exception):
    """A write from a worker whose attempt is no longer the job's current one."""


def record_transition(
    session: Session,
    job_id: str,
    from_status: str | None,
    to_status: str,
    reason: str | None,
    attempt: int,
    at: datetime | None = None,
) -> None:
    """The history row and its ``status`` event, in the caller's transaction.

    Callers change the job row first (a conditional UPDATE), which is what
    orders this job's events (see api.ledger.events). ``at``: now, unless given.
    """
    at = at or utcnow()
    session.execute(
        insert(table(JobTransition)),  # Core: no unit-of-work flush for a plain append
        {
            "job_id": job_id,
            "from_status": from_status,
            "to_status": to_status,
            "reason": reason,
            "attempt": attempt,
            "at": at,
        },
    )
    events.add_event(
        session,
        job_id,
        events.STATUS,
        {
            "from_status": from_status,
            "to_status": to_status,
            "reason": reason,
            "attempt": attempt,
            "at": at.isoformat(),
        },
    )
    # The webhook outbox (issue 15): a delivery row per subscribed endpoint, in this
    # same transaction, so a status change is never committed without its deliveries.
    if not _OBSERVERS:
        raise RuntimeError(
            "no observer of job status changes is wired: import api.webhooks.repository "
            "(the app, the worker's tasks and the operator CLI do)"
        )
    for observer in _OBSERVERS:
        observer(session, job_id, to_status, reason, attempt, at)


def create_job(
    session: Session,
    *,
    team_id: str,
    key_id: str | None,
    name: str | None,
    spec: dict[str, Any],
    spec_version: str,
    queue: str,
    epochs: int,
    max_restarts: int,
    priority: int = 0,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    sweep_id: str | None = None,
    trial_number: int | None = None,
    params: dict[str, Any] | None = None,
    published: bool = False,
    warm_start: dict[str, Any] | None = None,
) -> Job:
    """A new queued job, its creation transition and status event, in the caller's
    transaction. ``published``: the caller rings the doorbell after its commit, so
    ``published_at`` is the creation time (else None, and the reconciler rings it).

    The rows are Core INSERTs (every submit runs this: the unit of work cost more than
    the rows), so a unique index (idempotency key, sweep trial number) speaks at once.
    The returned ``Job`` carries every column but is not in the session: read it, do
    not change it.
    """
    now = utcnow()
    row: dict[str, Any] = dict(
        id=new_id(),
        team_id=team_id,
        created_by_key=key_id,
        name=name,
        status="queued",
        status_reason=None,
        error=None,
        spec=spec,
        spec_version=spec_version,
        queue=queue,
        priority=priority,
        attempt=0,
        max_restarts=max_restarts,
        cancel_requested=False,
        lease_expires_at=None,
        progress_epoch=0,
        progress_step=0,
        epochs=epochs,
        stopped_epoch=None,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        restarts=0,
        published_at=now if published else None,
        created_at=now,
        started_at=None,
        finished_at=None,
        updated_at=now,
        sweep_id=sweep_id,
        trial_number=trial_number,
        params=params,
        devices=job_devices(spec),
        device_pool=None,
        device_ids=None,
        warm_start=warm_start,
    )
    session.execute(insert(table(Job)), row)
    job = Job(**row)  # the answer's view of the row, outside the session
    # Created queued: the transition's time is the job's (the answer to the submit
    # shows it without reading it back).
    record_transition(session, job.id, None, "queued", None, 0, at=now)
    return job


def job_devices(spec: dict[str, Any]) -> int:
    """The devices a (resolved, stored) spec asks for: ``resources.devices``, default 1."""
    resources = spec.get("resources") or {}
    return int(resources.get("devices") or 1)


def get_job(session: Session, job_id: str, team_id: str | None) -> Job | None:
    """A job of the team (None = any team, for admins); another team's job is None."""
    stmt = select(Job).where(Job.id == job_id)
    if team_id is not None:
        stmt = stmt.where(Job.team_id == team_id)
    return session.scalar(stmt)


def transitions(session: Session, job_id: str) -> list[JobTransition]:
    return list(
        session.scalars(
            select(JobTransition).where(JobTransition.job_id == job_id).order_by(JobTransition.id)
        )
    )


def request_cancel(session: Session, job: Job) -> None:
    """Queued: canceled at once. Running: a flag the worker's heartbeat reads."""
    now = utcnow()
    done = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == "queued")
        .values(
            status="canceled",
            status_reason="canceled_by_user",
            finished_at=now,
            updated_at=now,
            cancel_requested=True,
        )
    )
    if done.rowcount:  # type: ignore[attr-defined]
        record_transition(session, job.id, "queued", "canceled", "canceled_by_user", job.attempt)
    else:
        session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == "running")
            .values(cancel_requested=True, updated_at=now)
        )
    session.refresh(job)


RETRYABLE = frozenset({"failed", "canceled"})


def retry_job(session: Session, job: Job) -> bool:
    """failed/canceled → queued (the worker resumes from the latest checkpoint).

    Compare-and-set on the status read, so a concurrent retry or cancel
    cannot both win; False when the job is not (or no longer) retryable.
    """
    if job.status not in RETRYABLE:
        return False
    from_status = job.status  # the UPDATE below refreshes job.status in the session
    now = utcnow()
    done = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == from_status)
        .values(
            status="queued",
            status_reason=None,
            error=None,
            cancel_requested=False,
            finished_at=None,
            lease_expires_at=None,
            stopped_epoch=None,
            updated_at=now,
            published_at=now,
        )
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return False
    record_transition(session, job.id, from_status, "queued", None, job.attempt)
    session.refresh(job)
    return True


def claim_job(
    session: Session,
    job_id: str,
    lease_seconds: float,
    *,
    device_pool: str | None = None,
    device_ids: list[int] | None = None,
) -> int | None:
    """queued → running, attempt + 1. None when someone else has it (a duplicate delivery).

    ``device_pool``/``device_ids``: the devices this attempt reserves (api.ledger.devices); they
    stay reserved while the job is ``running`` and are free again when it leaves it.
    """
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued", Job.cancel_requested.is_(False))
        .values(
            status="running",
            attempt=Job.attempt + 1,
            updated_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=now,
            status_reason=None,
            error=None,
            device_pool=device_pool,
            device_ids=device_ids,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    attempt = session.scalar(select(Job.attempt).where(Job.id == job_id))
    assert attempt is not None
    record_transition(session, job_id, "queued", "running", None, attempt)
    return attempt


@dataclass(frozen=True)
class Heartbeat:
    cancel_requested: bool


def heartbeat(
    session: Session,
    job_id: str,
    attempt: int,
    lease_seconds: float,
    *,
    epoch: int | None = None,
    step: int | None = None,
) -> Heartbeat:
    """Renew the lease (and record progress); raises StaleAttempt when fenced off."""
    now = utcnow()
    values: dict[str, Any] = {
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
        "updated_at": now,
    }
    if epoch is not None:
        values["progress_epoch"] = epoch
    if step is not None:
        values["progress_step"] = step
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, _is_current(attempt), Job.status == "running")
        .values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleAttempt(job_id)
    flag = session.scalar(select(Job.cancel_requested).where(Job.id == job_id))
    return Heartbeat(cancel_requested=bool(flag))


def finish_job(
    session: Session,
    job_id: str,
    attempt: int,
    *,
    status: str,
    reason: str,
    error: str | None = None,
    stopped_epoch: int | None = None,
    progress: tuple[int, int] | None = None,
) -> None:
    """running → a terminal status, only for the current attempt."""
    assert status in TERMINAL
    now = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "status_reason": reason,
        "error": error,
        "finished_at": now,
        "updated_at": now,
        "lease_expires_at": None,
        "stopped_epoch": stopped_epoch,
    }
    if progress is not None:
        values["progress_epoch"], values["progress_step"] = progress
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, _is_current(attempt), Job.status == "running")
        .values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleAttempt(job_id)
    record_transition(session, job_id, "running", status, reason, attempt)


def hand_back(
    session: Session,
    job_id: str,
    attempt: int,
    reason: str,
    progress: tuple[int, int] | None = None,
) -> None:
    """running → queued for a worker that is stopping (``worker_shutdown``), only for the
    current attempt. Not a restart: ``restarts`` (against ``max_restarts``) is unchanged;
    the next claim resumes from the checkpoint the worker saved as it stopped."""
    now = utcnow()
    values: dict[str, Any] = {}
    if progress is not None:
        values["progress_epoch"], values["progress_step"] = progress
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, _is_current(attempt), Job.status == "running")
        .values(
            status="queued",
            status_reason=reason,
            error=None,
            lease_expires_at=None,
            updated_at=now,
            published_at=now,
            **values,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleAttempt(job_id)
    record_transition(session, job_id, "running", "queued", reason, attempt)


def requeue_lost(
    session: Session,
    job_id: str,
    attempt: int,
    error: str,
    progress: tuple[int, int] | None = None,
    enforce_max_restarts: bool = True,
) -> str:
    """running → queued (``restarts`` + 1) after a part of the attempt was lost (a
    data-parallel rank died), or → failed once ``max_restarts`` is spent: what the
    reconciler does for a lost worker, decided by the worker itself at once. Returns the
    new status."""
    job = session.execute(
        select(Job.restarts, Job.max_restarts).where(Job.id == job_id, _is_current(attempt))
    ).one_or_none()
    if job is None:
        raise StaleAttempt(job_id)
    now = utcnow()
    values: dict[str, Any] = {"status_reason": "worker_lost", "updated_at": now,
                              "lease_expires_at": None}  # fmt: skip
    if progress is not None:
        values["progress_epoch"], values["progress_step"] = progress
    if enforce_max_restarts and job.restarts >= job.max_restarts:
        to = "failed"
        values |= {"status": to, "finished_at": now, "error": (
            f"{error}. The job was lost {job.restarts + 1} time(s); retry.max_restarts is "
            f"{job.max_restarts}."
        )}  # fmt: skip
    else:
        to = "queued"
        values |= {"status": to, "error": None, "restarts": Job.restarts + 1, "published_at": now}
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, _is_current(attempt), Job.status == "running")
        .values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleAttempt(job_id)
    record_transition(session, job_id, "running", to, "worker_lost", attempt)
    return to


def fence(session: Session, job_id: str, attempt: int) -> None:
    """Raise StaleAttempt unless ``attempt`` is the job's current, running attempt.

    Touching the job row under the attempt check fences the write, and on
    PostgreSQL its row lock orders it against a concurrent re-claim (and
    orders the job's events, see api.ledger.events).
    """
    fenced = session.execute(
        update(Job)
        .where(Job.id == job_id, _is_current(attempt), Job.status == "running")
        .values(updated_at=utcnow())
    )
    if fenced.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleAttempt(job_id)

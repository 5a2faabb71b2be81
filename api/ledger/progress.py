"""The ``progress`` event: where a running job is inside its epoch, for live views.

The worker writes one at most every ``worker.runner.PROGRESS_SECONDS`` per job (a
throttled heartbeat of its own). Like every event it is written after a fenced
UPDATE of the job row (here ``progress_epoch``/``progress_step``), which orders it
among the job's events (see ``api.ledger.events``). Progress is ephemeral: each new one
deletes the writer's previous one, so a job keeps one progress row however long it
runs, and a client that reconnects gets the latest, not the history.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, update
from sqlalchemy.orm import Session

from api.db.models import utcnow
from api.ledger.events import JobEvent, json_float
from api.ledger.models import Job
from api.ledger.repository import StaleAttempt, _is_current

PROGRESS = "progress"


def record_progress(
    session: Session,
    job_id: str,
    attempt: int,
    *,
    epoch: int,
    epochs: int,
    step: int,
    batch: int,
    steps_per_epoch: int,
    loss: float | None,
    replaces: int | None = None,
) -> int:
    """Write a progress event (and drop ``replaces``, the previous one); returns its id.

    Raises StaleAttempt when this attempt was fenced off or the job is no longer running.
    """
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, _is_current(attempt), Job.status == "running")
        .values(progress_epoch=epoch, progress_step=step, updated_at=utcnow())
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleAttempt(job_id)
    payload: dict[str, Any] = {
        "attempt": attempt,
        "epoch": epoch,
        "epochs": epochs,
        "step": step,
        "batch": batch,
        "steps_per_epoch": steps_per_epoch,
        "loss": json_float(loss) if loss is not None else None,
    }
    new_id = session.execute(
        insert(JobEvent)
        .values(job_id=job_id, kind=PROGRESS, payload=payload)
        .returning(JobEvent.id)
    ).scalar_one()
    if replaces is not None:
        session.execute(delete(JobEvent).where(JobEvent.id == replaces, JobEvent.kind == PROGRESS))
    return int(new_id)

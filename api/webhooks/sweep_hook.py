"""``sweep.ended`` webhooks: an outbox row per subscribed webhook, written by the sweeps'
own end-of-sweep hook (api.sweeps.trials.on_sweep_ended), in the transaction that ends the
sweep. Imported for its effect by the API (api.webhooks.router) and the worker
(worker.sidecars), the two kinds of process that end sweeps."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.db.models import utcnow
from api.sweeps.models import Sweep
from api.sweeps.trials import on_sweep_ended
from api.webhooks.repository import enqueue_sweep_ended


@on_sweep_ended
def sweep_ended_webhooks(session: Session, sweep: Sweep) -> None:
    enqueue_sweep_ended(
        session,
        sweep.team_id,
        sweep.id,
        sweep.status,
        sweep.status_reason,
        utcnow(),
        best_job_id=sweep.best_job_id,
    )

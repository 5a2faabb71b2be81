"""GET /v1/admin/workers: the workers, the devices they offer and which are free (issue 27)."""

from __future__ import annotations

from fastapi import APIRouter

from api.db.models import utcnow
from api.deps import SessionDep
from api.ledger import devices, workers
from api.problems import Problem
from api.teams.auth import AdminDep
from api.teams.schemas import WorkerPage, WorkerRead

router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    responses={
        401: {"model": Problem, "description": "Missing or invalid API key."},
        403: {"model": Problem, "description": "Not an admin key."},
    },
)


@router.get("/workers", response_model=WorkerPage)
def list_workers(session: SessionDep, admin: AdminDep) -> WorkerPage:
    """Every worker with a presence row: its queues, devices, pool, and the pool's free
    devices and reservations (read from the running jobs, so never stale)."""
    rows = workers.all_workers(session)
    pools = devices.pools(session, {w.device_pool or w.id for w in rows})
    since = utcnow() - workers.ALIVE_WITHIN
    items = []
    for w in rows:
        name = w.device_pool or w.id
        pool = pools.get(name)
        held: dict[str, list[int]] = {}
        for index, job_id in sorted((pool.held if pool else {}).items()):
            held.setdefault(job_id, []).append(index)
        items.append(
            WorkerRead(
                id=w.id,
                queues=[q for q in w.queues.split(",") if q],
                alive=w.heartbeat_at >= since,
                started_at=w.started_at,
                heartbeat_at=w.heartbeat_at,
                devices=w.devices,
                device_pool=name,
                free_devices=[i for i in range(w.devices) if pool is None or i in pool.free],
                reserved=held,
            )
        )
    return WorkerPage(items=items)

"""GET /v1/jobs: a page of job summaries (about 0.4 kB each instead of the full job)."""

from __future__ import annotations

import time
from typing import Literal

from sqlalchemy.orm import Session

from api import etag
from api.jobs import list_repository as repo
from api.jobs.list_cache import ListCache, Page
from api.jobs.list_schemas import BestMetric, JobSummary, JobSummaryPage
from api.jobs.schemas import JobProgress
from api.ledger.events import json_float
from api.ledger.models import Job
from api.pagination import decode_cursor, encode_cursor
from api.teams.repository import Principal
from ml.monitor import resolve_mode


def monitor_of(job: Job) -> tuple[str, Literal["min", "max"]]:
    policy = job.spec.get("checkpointing") or {}
    name = str(policy.get("monitor") or "val_loss")
    mode = policy.get("mode") or "auto"
    return name, resolve_mode(name, "max" if mode == "max" else "min" if mode == "min" else "auto")


def list_page(
    session: Session,
    principal: Principal,
    *,
    team_id: str | None,
    status: str | None,
    name: str | None,
    sweep_id: str | None,
    cursor: str | None,
    limit: int,
    id_prefix: str | None = None,
) -> JobSummaryPage:
    after = decode_cursor(cursor) if cursor else None
    # A listing shows the caller's team; an admin may ask for another team's.
    scope = team_id if principal.is_admin and team_id is not None else principal.team_id
    rows = repo.list_jobs(
        session,
        scope,
        status=status,
        name=name,
        sweep_id=sweep_id,
        limit=limit + 1,
        after=after,
        id_prefix=id_prefix,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    monitors = {job.id: monitor_of(job) for job in rows}
    found = repo.extremes(session, [(job_id, m) for job_id, (m, _) in monitors.items()])
    items = []
    for job in rows:
        metric, mode = monitors[job.id]
        lo, hi = found.get((job.id, metric), (None, None))
        value = lo if mode == "min" else hi
        items.append(
            JobSummary(
                id=job.id,
                name=job.name,
                status=job.status,
                status_reason=job.status_reason,
                progress=JobProgress(
                    epoch=job.progress_epoch, epochs=job.epochs, step=job.progress_step
                ),
                best_metric=None
                if value is None
                else BestMetric(name=metric, value=json_float(float(value)), mode=mode),
                sweep_id=job.sweep_id,
                pack_id=job.pack_id,
                created_at=job.created_at,
                started_at=job.started_at,
                finished_at=job.finished_at,
            )
        )
    return JobSummaryPage(
        items=items,
        next_cursor=encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None,
    )


def cached_list_page(
    session: Session,
    principal: Principal,
    cache: ListCache,
    *,
    team_id: str | None,
    status: str | None,
    name: str | None,
    sweep_id: str | None,
    cursor: str | None,
    limit: int,
    id_prefix: str | None = None,
) -> Page:
    """The page's JSON and ETag: built by :func:`list_page`, or the same bytes again while
    no event was written since they were built (``api.jobs.list_cache``)."""
    key = (principal.team_id, principal.is_admin, team_id, status, name, sweep_id, cursor,
           limit, id_prefix)  # fmt: skip
    generation = cache.generation  # read before the version and the page (see ListCache)
    version = repo.events_version(session)
    page = cache.get(key, version)
    if page is not None:
        return page
    built = list_page(
        session,
        principal,
        team_id=team_id,
        status=status,
        name=name,
        sweep_id=sweep_id,
        cursor=cursor,
        limit=limit,
        id_prefix=id_prefix,
    )
    body = built.model_dump_json(by_alias=True).encode()
    page = Page(generation, version, time.monotonic(), body, etag.etag(principal.team_id, body))
    cache.put(key, page)
    return page

"""Jobs: the service between thin endpoints and the repository."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.jobs.schemas import (
    JobCreate,
    JobProgress,
    JobRead,
    JobStatus,
    JobTransitionRead,
    QueueReason,
    WarmStartRead,
    spec_json,
)
from api.jobs.spec_service import resolve_limits, validate_and_plan
from api.ledger import repository as repo
from api.ledger import scheduling, workers
from api.ledger.access import get_job_or_404, team_scope
from api.ledger.models import Job, JobTransition
from api.predict import repository as model_exports
from api.predict.repository import ModelExport
from api.predict.schemas import export_read
from api.problems import FieldProblem, ProblemError
from api.settings import Settings
from api.storage.quota import refuse_when_full
from api.teams.models import Team
from api.teams.repository import Principal
from ml.spec import SPEC_VERSION, JobSpec


def _request_hash(body: JobCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _by_idempotency_key(session: Session, team_id: str, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.team_id == team_id, Job.idempotency_key == key))


def _replay(job: Job, request_hash: str) -> tuple[Job, bool]:
    if job.request_hash != request_hash:
        raise ProblemError(
            422,
            "Idempotency-Key reused",
            "This Idempotency-Key was already used with a different request body; "
            "use a new key for a new job.",
            errors=[
                FieldProblem(
                    loc="header.Idempotency-Key",
                    msg="reused with another body",
                    type="idempotency_key_reused",
                )
            ],
        )
    return job, False


def _check_queued_quota(session: Session, team_id: str) -> None:
    """429 when the team is at ``max_queued_jobs``; atomic with the insert that follows.

    The team row is written (a no-op UPDATE) before the count, so the count and the
    insert run under the team's write lock until the request commits: PostgreSQL
    serialises on the row lock, SQLite on its single writer. Two concurrent
    submissions can no longer both see the last free place.
    """
    quota = session.scalar(select(Team.max_queued_jobs).where(Team.id == team_id))
    if quota is None:
        return
    session.execute(
        update(Team)
        .where(Team.id == team_id)
        .values(max_queued_jobs=Team.max_queued_jobs)
        .execution_options(synchronize_session=False)
    )
    team = session.get(Team, team_id, populate_existing=True)
    if team is None or team.max_queued_jobs is None:
        return
    queued = session.scalar(
        select(func.count()).select_from(Job).where(Job.team_id == team_id, Job.status == "queued")
    )
    if (queued or 0) >= team.max_queued_jobs:
        raise ProblemError(
            429,
            "Too many queued jobs",
            f"Your team has {queued} queued jobs, its quota is {team.max_queued_jobs}; "
            "wait for some to start or cancel some.",
            headers={"Retry-After": "30"},
        )


_TEAM_QUOTAS = select(Team.max_queued_jobs, Team.max_storage_bytes, Team.max_running_jobs)


@dataclass(frozen=True)
class Submitted:
    """What ``create_job`` did: a new job (``created``), or the original of a repeated
    Idempotency-Key. For a new job, what its answer needs without reading it back."""

    job: Job
    created: bool
    spec: JobSpec | None = None  # the resolved spec it stored
    running_quota: bool = True  # whether its team has a max_running_jobs quota


def create_job(
    session: Session,
    settings: Settings,
    principal: Principal,
    body: JobCreate,
    idempotency_key: str | None = None,
) -> Submitted:
    """The new job, or -- for a repeated Idempotency-Key -- the original."""
    team_id = principal.team_id  # a job belongs to the submitting key's team
    # Only a keyed request can be replayed, so only its body is hashed for the comparison.
    request_hash = None
    if idempotency_key is not None:
        request_hash = _request_hash(body)
        existing = _by_idempotency_key(session, team_id, idempotency_key)
        if existing is not None:
            return Submitted(*_replay(existing, request_hash))
    spec = resolve_limits(body.spec, settings)
    # One read of the team's quotas: a quota that is not set costs no further query.
    team = session.execute(_TEAM_QUOTAS.where(Team.id == team_id)).one_or_none()
    default_quota = settings.default_storage_quota_bytes
    if team is None or team.max_storage_bytes is not None or default_quota:
        # A full team is a 507 whatever it submits; one with room left gets a 422 at
        # checkpointing.keep_last (validate_spec) when the job's checkpoints would not fit.
        refuse_when_full(session, team_id, default_quota)  # storage quota (api/storage)
    checked = validate_and_plan(spec, session, team_id, settings=settings)
    spec = checked.spec  # warm_start.checkpoint pinned to an id (api.checkpoints.warm_start)
    warm_start = checked.warm_start.as_json() if checked.warm_start is not None else None
    if team is None or team.max_queued_jobs is not None:
        _check_queued_quota(session, team_id)
    queue = settings.gpu_queue if body.spec.resources.device == "cuda" else settings.queue
    try:
        job = repo.create_job(
            session,
            team_id=team_id,
            key_id=principal.key_id,
            name=body.name,
            spec=spec_json(spec),
            spec_version=SPEC_VERSION,
            queue=queue,
            epochs=body.spec.epochs,
            max_restarts=body.spec.retry.max_restarts,
            priority=body.priority,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            published=True,  # the request rings the doorbell after its commit
            warm_start=warm_start,
        )
    except IntegrityError:
        # A concurrent request with the same key won the unique index: answer with its job.
        session.rollback()
        if idempotency_key is None or request_hash is None:
            raise
        existing = _by_idempotency_key(session, team_id, idempotency_key)
        if existing is None:
            raise
        return Submitted(*_replay(existing, request_hash))
    running_quota = team is None or team.max_running_jobs is not None
    return Submitted(job, True, spec, running_quota)


def _queue_reason(
    session: Session, job: Job, room: dict[str, int | None] | None = None
) -> QueueReason | None:
    """Why a queued job waits; ``room`` caches each team's room under its running quota
    (devices it may still start; None: no quota) across a page."""
    if job.status != "queued":
        return None
    cache = {} if room is None else room
    if job.team_id not in cache:
        cache[job.team_id] = scheduling.team_room(session, job.team_id)
    needed = job.devices or 1
    left = cache[job.team_id]
    if left is not None and needed > left:
        return QueueReason.quota  # its devices would take the team past max_running_jobs
    wants_gpu = (job.spec.get("resources") or {}).get("device") == "cuda"
    if wants_gpu and not workers.queue_served(session, job.queue):
        return QueueReason.waiting_for_gpu  # no alive worker consumes the GPU queue
    if needed > 1 and workers.largest_alive(session, job.queue) < needed:
        return QueueReason.waiting_for_devices  # no alive worker is that big (yet)
    return QueueReason.waiting_for_worker


def retry_job(session: Session, principal: Principal, job_id: str) -> Job:
    """failed/canceled → queued; 409 for any other status. The caller commits, then publishes."""
    job = get_job_or_404(session, principal, job_id)
    if job.status in repo.RETRYABLE:
        _check_queued_quota(session, job.team_id)  # a retried job is queued like a new one
    if not repo.retry_job(session, job):
        session.refresh(job)
        raise ProblemError(
            409,
            "Conflict",
            f"The job is {job.status}; only a failed or canceled job can be retried.",
        )
    return job


def to_read(session: Session, job: Job) -> JobRead:
    read = _read(job, _transitions(repo.transitions(session, job.id)), _queue_reason(session, job))
    read.export = export_read(model_exports.get_export(session, job.id))
    return read


def read_job(session: Session, principal: Principal, job_id: str) -> JobRead:
    """``GET /v1/jobs/{id}``: the job and its model export in one query, its transitions in
    another (three with the key's; a queued job adds why it waits), the spec validated once
    per process (issue 28, finding 13)."""
    stmt = (
        select(Job, ModelExport)
        .outerjoin(ModelExport, ModelExport.job_id == Job.id)
        .where(Job.id == job_id)
    )
    scope = team_scope(principal)
    if scope is not None:
        stmt = stmt.where(Job.team_id == scope)
    row = session.execute(stmt).first()
    if row is None:
        raise ProblemError(404, "Not found", f"No job {job_id!r}.")
    job, export = row
    read = _read(job, _transitions(repo.transitions(session, job.id)), _queue_reason(session, job))
    read.export = export_read(export)
    return read


_SPECS: OrderedDict[str, JobSpec] = OrderedDict()
_SPECS_MAX = 4096
_SPECS_LOCK = threading.Lock()


def resolved_spec(job: Job) -> JobSpec:
    """The job's stored (resolved) spec as a model, validated once per job and process: a
    stored spec never changes (least recently used of ``_SPECS_MAX`` kept). Read only."""
    key = f"{job.id}:{job.spec_version}"
    with _SPECS_LOCK:
        spec = _SPECS.get(key)
        if spec is not None:
            _SPECS.move_to_end(key)
            return spec
    spec = JobSpec.model_validate(job.spec)
    with _SPECS_LOCK:
        _SPECS[key] = spec
        while len(_SPECS) > _SPECS_MAX:
            _SPECS.popitem(last=False)
    return spec


def new_job_read(session: Session, submitted: Submitted) -> JobRead:
    """A job this request created: one transition (created queued, at its creation time),
    no model export, and no running-jobs count when its team has no such quota."""
    job = submitted.job
    room: dict[str, int | None] | None = None if submitted.running_quota else {job.team_id: None}
    created = JobTransitionRead(
        from_status=None, to_status=JobStatus.queued, reason=None, attempt=0, at=job.created_at
    )
    return _read(job, [created], _queue_reason(session, job, room), submitted.spec)


def _transitions(rows: list[JobTransition]) -> list[JobTransitionRead]:
    return [
        JobTransitionRead(
            from_status=t.from_status,
            to_status=t.to_status,
            reason=t.reason,
            attempt=t.attempt,
            at=t.at,
        )
        for t in rows
    ]


def _read(
    job: Job,
    transitions: list[JobTransitionRead],
    queue_reason: QueueReason | None,
    spec: JobSpec | None = None,
) -> JobRead:
    return JobRead(
        id=job.id,
        name=job.name,
        status=job.status,
        status_reason=job.status_reason,
        queue_reason=queue_reason,
        error=job.error,
        spec=spec if spec is not None else resolved_spec(job),
        spec_version=job.spec_version,
        priority=job.priority,
        attempt=job.attempt,
        cancel_requested=job.cancel_requested,
        progress=JobProgress(epoch=job.progress_epoch, epochs=job.epochs, step=job.progress_step),
        stopped_epoch=job.stopped_epoch,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        transitions=transitions,
        sweep_id=job.sweep_id,
        trial_number=job.trial_number,
        pack_id=job.pack_id,
        params=job.params,
        warm_start=WarmStartRead.model_validate(job.warm_start) if job.warm_start else None,
    )

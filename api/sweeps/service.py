"""Sweeps: the service between thin endpoints and the repository."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.jobs.schemas import JobStatus, StatusReason
from api.jobs.spec_service import dataset_info, device_problems, validate_and_plan
from api.ledger import repository as jobs_repo
from api.ledger.access import team_scope
from api.ledger.models import Job
from api.ledger.repository import TERMINAL
from api.pagination import decode_cursor, encode_cursor
from api.problems import FieldProblem, ProblemError
from api.settings import Settings
from api.sweeps import repository as repo
from api.sweeps import space
from api.sweeps.models import Sweep
from api.sweeps.schemas import (
    PackRead,
    SweepCreate,
    SweepObjective,
    SweepPage,
    SweepRead,
    SweepWarning,
    TrialCount,
    TrialPage,
    TrialRead,
)
from api.sweeps.search import (
    ChoiceParameter,
    GridParameter,
    IntUniformParameter,
    execution_of,
)
from api.sweeps.storage import storage_problems
from api.sweeps.trials import NewTrial, advance, end_sweep, mode_of, records
from api.teams.models import Team
from api.teams.repository import Principal
from ml.checks import DatasetInfo
from ml.monitor import resolve_mode
from ml.spec import JobSpec


def _invalid(problems: list[space.Problem]) -> ProblemError:
    errors = [FieldProblem(loc=p.loc, msg=p.msg, type=p.type) for p in problems]
    detail = "; ".join(f"{e.loc}: {e.msg}" for e in errors[:5])
    return ProblemError(422, "Invalid sweep", detail, errors=errors)


def _grid_problems(body: SweepCreate) -> list[space.Problem]:
    if body.algorithm.kind != "grid":
        return []
    bad = [
        space.Problem(
            space.param_loc(path, "kind"),
            f"grid search needs every parameter to be "
            f"a choice or grid, and {path} is {dist.kind}: use random or tpe, or list "
            "its values",
            "grid_needs_values",
        )
        for path, dist in body.parameters.items()
        if not isinstance(dist, space.ChoiceParameter | space.GridParameter)
    ]
    size = space.grid_size(body.parameters)
    if body.max_trials is not None and body.max_trials > size:
        bad.append(
            space.Problem(
                "max_trials",
                f"max_trials {body.max_trials} is more than "
                f"the grid's {size} points: lower it (or leave it out)",
                "max_trials_above_grid",
            )
        )
    return bad


def _max_trials(body: SweepCreate) -> int:
    if body.algorithm.kind != "grid":
        return body.max_trials or 10
    return body.max_trials or space.grid_size(body.parameters)


def validate(
    session: Session, team_id: str, body: SweepCreate, settings: Settings | None = None
) -> tuple[int, JobSpec]:
    """Every 422 before anything is queued; returns max_trials and the base spec, its
    warm_start source pinned to a checkpoint id (every trial starts from that one). With
    ``settings``, the trials' checkpoints against the team's storage quota too
    (api.sweeps.storage)."""
    pinned = validate_and_plan(body.spec, session, team_id).spec
    infos: dict[str, DatasetInfo] = {}

    def info_for(spec: JobSpec) -> DatasetInfo:
        key = spec.dataset.source.model_dump_json()
        if key not in infos:
            try:
                infos[key] = dataset_info(spec, session, team_id)
            except ProblemError as exc:  # an unknown dataset among the choices
                exc.errors = [
                    FieldProblem(loc="parameters", msg=e.msg, type=e.type) for e in exc.errors or []
                ]
                raise
        return infos[key]

    # Every problem in one 422: the search space's shape, the grid, and the objective (judged
    # on each trial when the space is sound, else on what can be told without trials).
    metric = body.objective.metric
    problems = space.structural_problems(body.spec, body.parameters)
    if problems:
        problems += space.base_objective_problems(
            body.spec, body.parameters, metric, info_for(body.spec)
        )
    else:
        problems = space.semantic_problems(body.spec, body.parameters, metric, info_for)
    problems = _grid_problems(body) + problems
    if problems:
        raise _invalid(problems)
    max_trials = _max_trials(body)
    if settings is not None:
        problems = storage_problems(
            session, team_id, body, max_trials, info_for, settings.default_storage_quota_bytes
        )
        problems += _device_problems(session, team_id, body, settings)
        if problems:
            raise _invalid(problems)
    return max_trials, pinned


def _device_problems(
    session: Session, team_id: str, body: SweepCreate, settings: Settings
) -> list[space.Problem]:
    """``resources.devices`` as a job's submit checks it (more than any worker may give, or
    than the team's quota): for the base spec, and for every value a parameter gives it."""
    path = "resources.devices"
    dist = body.parameters.get(path)
    asked: list[tuple[str, object]] = []
    if dist is None:
        asked.append((f"spec.{path}", body.spec.resources.devices))
    elif isinstance(dist, ChoiceParameter | GridParameter):
        asked += [(space.param_loc(path, "values", i), v) for i, v in enumerate(dist.values)]
    elif isinstance(dist, IntUniformParameter):
        asked.append((space.param_loc(path, "high"), dist.high))
    found: list[space.Problem] = []
    for loc, value in asked:
        if not isinstance(value, int) or isinstance(value, bool):
            continue  # not a device count: the trial checks say so
        resources = body.spec.resources.model_copy(update={"devices": value})
        trial = body.spec.model_copy(update={"resources": resources})
        for p in device_problems(trial, session, team_id, settings):
            found.append(space.Problem(loc, f"{path} {p.msg}", p.type))
    return found


def _warnings(session: Session, team_id: str, body: SweepCreate) -> list[SweepWarning]:
    quota = session.scalar(select(Team.max_running_jobs).where(Team.id == team_id))
    if quota is not None and body.max_concurrent_trials > quota:
        return [
            SweepWarning(
                loc="max_concurrent_trials",
                msg=f"max_concurrent_trials {body.max_concurrent_trials} is above the team's "
                f"running quota ({quota}): at most {quota} trials (with the team's other jobs) "
                "run at once",
            )
        ]
    return []


def create_sweep(
    session: Session, settings: Settings, principal: Principal, body: SweepCreate
) -> tuple[Sweep, list[NewTrial], list[SweepWarning]]:
    """The sweep and its first trials, in the caller's transaction (commit, then publish)."""
    team_id = principal.team_id
    max_trials, spec = validate(session, team_id, body, settings)
    objective = SweepObjective(
        metric=body.objective.metric, mode=resolve_mode(body.objective.metric, body.objective.mode)
    )
    sweep = Sweep(
        team_id=team_id,
        created_by_key=principal.key_id,
        name=body.name,
        spec=spec.model_dump(mode="json"),
        parameters={p: d.model_dump(mode="json") for p, d in body.parameters.items()},
        algorithm=body.algorithm.model_dump(mode="json"),
        objective=objective.model_dump(mode="json"),
        early_termination=body.early_termination.model_dump(mode="json"),
        max_trials=max_trials,
        max_concurrent_trials=body.max_concurrent_trials,
        priority=body.priority,
        execution=body.execution.model_dump(mode="json"),
        queues={"cpu": settings.queue, "cuda": settings.gpu_queue},
    )
    session.add(sweep)
    session.flush()
    new = advance(session, sweep)
    return sweep, new, _warnings(session, team_id, body)


def get_or_404(session: Session, principal: Principal, sweep_id: str) -> Sweep:
    sweep = repo.get_sweep(session, sweep_id, team_scope(principal))
    if sweep is None:
        raise ProblemError(404, "Not found", f"No sweep {sweep_id!r}.")
    return sweep


def cancel(session: Session, principal: Principal, sweep_id: str) -> Sweep:
    """Queued trials canceled at once, running ones asked to stop; 409 once it has ended."""
    get_or_404(session, principal, sweep_id)
    sweep = repo.lock_sweep(session, sweep_id)
    assert sweep is not None
    if sweep.status != "running":
        raise ProblemError(409, "Conflict", f"The sweep has already ended ({sweep.status}).")
    for job in repo.trials(session, sweep.id):
        if job.status not in TERMINAL:
            jobs_repo.request_cancel(session, job)
    end_sweep(session, sweep, "canceled", "canceled_by_user")
    advance(session, sweep)  # reports the trials canceled just now
    return sweep


def _trial_reads(session: Session, sweep: Sweep, trials: list[Job]) -> list[TrialRead]:
    """The leaderboard: by objective (best first), then trials without one by number."""
    _, objective = records(session, sweep, trials)
    mode = mode_of(sweep)
    sign = 1.0 if mode == "min" else -1.0
    ranked = sorted(
        (t for t in trials if objective[t.id] is not None),
        key=lambda t: (sign * (objective[t.id] or 0.0), t.trial_number or 0),
    )
    rest = [t for t in trials if objective[t.id] is None]
    rank = {t.id: i + 1 for i, t in enumerate(ranked)}
    return [
        TrialRead(
            job_id=t.id,
            trial_number=t.trial_number or 0,
            status=JobStatus(t.status),
            status_reason=StatusReason(t.status_reason) if t.status_reason else None,
            params=dict(t.params or {}),
            objective=objective[t.id],
            epochs=t.progress_epoch,
            rank=rank.get(t.id),
            pack_id=t.pack_id,
        )
        for t in ranked + rest
    ]


def _pack_reads(session: Session, sweep: Sweep, trials: list[Job]) -> list[PackRead]:
    number = {t.id: t.trial_number or 0 for t in trials}
    return [
        PackRead(
            id=p.id,
            trial_ids=list(p.job_ids),
            trial_numbers=[number.get(j, -1) for j in p.job_ids],
            started_at=p.started_at,
        )
        for p in repo.packs(session, sweep.id)
    ]


def leaderboard(session: Session, sweep: Sweep) -> TrialPage:
    return TrialPage(items=_trial_reads(session, sweep, repo.trials(session, sweep.id)))


def to_read(
    session: Session, sweep: Sweep, warnings: list[SweepWarning] | None = None
) -> SweepRead:
    trials = repo.trials(session, sweep.id)
    board = _trial_reads(session, sweep, trials)
    best = next((t for t in board if t.status == "succeeded" and t.objective is not None), None)
    counts = Counter((t.status, t.status_reason) for t in trials)
    parameters = space.as_distributions(sweep.parameters)
    return SweepRead.model_validate(
        {
            "id": sweep.id,
            "name": sweep.name,
            "status": sweep.status,
            "status_reason": sweep.status_reason,
            "error": sweep.error,
            "spec": sweep.spec,
            "parameters": parameters,
            "algorithm": sweep.algorithm,
            "objective": sweep.objective,
            "early_termination": sweep.early_termination,
            "max_trials": sweep.max_trials,
            "max_concurrent_trials": sweep.max_concurrent_trials,
            "execution": execution_of(sweep.execution),
            "packs": _pack_reads(session, sweep, trials),
            "packing_off_reason": repo.packing_off_reason(session, sweep.id),
            "trials_created": len(trials),
            "trials_ended": sum(1 for t in trials if t.status in TERMINAL),
            "counts": [
                TrialCount.model_validate({"status": s, "status_reason": r, "count": n})
                for (s, r), n in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
            ],
            "best": best,
            "epochs_trained": sum(t.progress_epoch for t in trials),
            "warnings": warnings or [],
            "created_at": sweep.created_at,
            "finished_at": sweep.finished_at,
        }
    )


def list_page(session: Session, principal: Principal, cursor: str | None, limit: int) -> SweepPage:
    after = decode_cursor(cursor) if cursor else None
    rows = repo.list_sweeps(session, team_scope(principal), limit=limit + 1, after=after)
    more = len(rows) > limit
    rows = rows[:limit]
    return SweepPage(
        items=[to_read(session, s) for s in rows],
        next_cursor=encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None,
    )

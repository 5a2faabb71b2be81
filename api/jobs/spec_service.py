"""Semantic checks of a spec against the data it names, before anything is queued."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.checkpoints.warm_start import PlannedWarmStart, check_source, plan_warm_start
from api.datasets import repository as datasets_repo
from api.datasets.codec import dataset_info as uploaded_info
from api.problems import FieldProblem, ProblemError
from api.settings import Settings
from api.storage.quota import checkpoint_room
from api.teams.models import Team
from ml.architecture import TrainError
from ml.checks import DatasetInfo, SpecProblem, builtin_info, check_spec
from ml.column_spec import column_problems, encoded_width
from ml.resources import ResourceLimits, check_resources, estimate
from ml.spec import BuiltinSource, JobSpec, LimitsSpec


def dataset_info(
    spec: JobSpec, session: Session, team_id: str, prefix: str = "spec"
) -> DatasetInfo:
    """What the spec's dataset looks like: a builtin's facts, or the team's upload's.

    An uploaded dataset is read with a share lock, so a concurrent delete waits
    for the job that is being created on it (or the job sees it gone).
    """
    source = spec.dataset.source
    if isinstance(source, BuiltinSource):
        return builtin_info(source)
    dataset = datasets_repo.get_dataset(session, source.dataset_id, team_id, lock="share")
    if dataset is None:
        raise ProblemError(
            422,
            "Invalid spec",
            f"Unknown dataset id {source.dataset_id!r}: upload it with POST /v1/datasets.",
            errors=[
                FieldProblem(
                    loc=f"{prefix}.dataset.source.dataset_id",
                    msg=f"no dataset {source.dataset_id!r} in this team; "
                    "see GET /v1/datasets for the ids",
                    type="unknown_dataset",
                )
            ],
        )
    info = uploaded_info(dataset.info)
    meta = dict(dataset.info)
    if meta.get("columns"):  # a typed table: the model sees its encoded inputs
        used = list(meta.get("feature_names") or [])
        width = encoded_width(spec.dataset.columns, meta["columns"], used)
        info = replace(info, n_features=width)
    return info


def table_problems(spec: JobSpec, session: Session, team_id: str) -> list[SpecProblem]:
    """``dataset.columns`` against the upload's typed columns (a builtin takes none)."""
    columns = spec.dataset.columns
    if not columns:
        return []
    source = spec.dataset.source
    meta = {}
    if not isinstance(source, BuiltinSource):
        stored = datasets_repo.get_dataset(session, source.dataset_id, team_id)
        meta = dict(stored.info) if stored is not None else {}
    if not meta.get("columns"):
        return [SpecProblem(("dataset", "columns"), "dataset.columns applies to a csv upload "
                            "with typed columns", "columns_not_applicable")]  # fmt: skip
    found = column_problems(columns, meta["columns"], list(meta.get("feature_names") or []))
    return [SpecProblem(("dataset", "columns", *loc), msg, kind) for loc, msg, kind in found]


def resource_limits(settings: Settings) -> ResourceLimits:
    return ResourceLimits(
        max_parameters=settings.max_parameters,
        max_job_memory_bytes=settings.max_job_memory_bytes,
        max_runtime_seconds=settings.max_runtime_seconds,
    )


def resolve_limits(spec: JobSpec, settings: Settings) -> JobSpec:
    """The spec with the operator's default ``limits.max_runtime_seconds`` when it sets none."""
    if spec.limits.max_runtime_seconds is not None:
        return spec
    limits = LimitsSpec(max_runtime_seconds=settings.max_runtime_seconds)
    return spec.model_copy(update={"limits": limits})


def _storage_problems(
    spec: JobSpec, info: DatasetInfo, session: Session, team_id: str, settings: Settings
) -> list[SpecProblem]:
    """The checkpoints the job keeps against the team's storage left (api.storage.quota)."""
    try:
        est = estimate(spec, info)
    except TrainError:  # the model does not fit the data: check_spec says so
        return []
    found = checkpoint_room(session, team_id, spec, est, settings.default_storage_quota_bytes)
    return [found] if found is not None else []


def device_problems(
    spec: JobSpec, session: Session, team_id: str, settings: Settings
) -> list[SpecProblem]:
    """``resources.devices`` against what any worker could ever give (issue 27): the
    operator's ``TRAINFORGE_MAX_DEVICES_PER_JOB``, and the team's ``max_running_jobs``
    (which counts devices). A job that fits both but no alive worker yet waits queued
    with ``queue_reason: waiting_for_devices`` instead."""
    wanted = spec.resources.devices
    loc = ("resources", "devices")
    if wanted > settings.max_devices_per_job:
        msg = (
            f"asks for {wanted} devices; the most a job may have here is "
            f"{settings.max_devices_per_job} (TRAINFORGE_MAX_DEVICES_PER_JOB, the largest "
            "worker this deployment has)"
        )
        return [SpecProblem(loc, msg, "too_many_devices")]
    quota = session.scalar(select(Team.max_running_jobs).where(Team.id == team_id))
    if quota is not None and wanted > quota:
        msg = (
            f"asks for {wanted} devices; your team's max_running_jobs quota is {quota} "
            "(a running job counts one per device), so it could never start"
        )
        return [SpecProblem(loc, msg, "devices_over_quota")]
    return []


@dataclass(frozen=True)
class Validated:
    info: DatasetInfo
    spec: JobSpec  # as given, with warm_start.checkpoint resolved to the source's id
    warm_start: PlannedWarmStart | None


def _inputs_known(spec: JobSpec, session: Session, team_id: str) -> bool:
    """Whether the model's input width is known before the job runs: not for a table with
    typed columns, whose encoding is fitted on the training split."""
    source = spec.dataset.source
    if isinstance(source, BuiltinSource):
        return True
    stored = datasets_repo.get_dataset(session, source.dataset_id, team_id)
    return stored is not None and not dict(stored.info).get("columns")


def validate_spec(
    spec: JobSpec,
    session: Session,
    team_id: str,
    prefix: str = "spec",
    settings: Settings | None = None,
) -> DatasetInfo:
    """Raises a 422 listing every semantic problem, each with its location (see
    ``validate_and_plan``)."""
    return validate_and_plan(spec, session, team_id, prefix, settings).info


def validate_and_plan(
    spec: JobSpec,
    session: Session,
    team_id: str,
    prefix: str = "spec",
    settings: Settings | None = None,
) -> Validated:
    """Raises a 422 listing every semantic problem, each with its location.

    With ``settings``, the operator's limits too: parameters, estimated training
    memory, the runtime ceiling (``ml.resources``), and the checkpoints the job keeps
    against the team's storage quota (``api.storage.quota``). A ``warm_start`` is checked
    against its source (``api.checkpoints.warm_start``): the answer's spec names the source
    checkpoint by id, and says which tensors would load.
    """
    info = dataset_info(spec, session, team_id, prefix)
    problems: list[SpecProblem] = check_spec(spec, info) + table_problems(spec, session, team_id)
    if settings is not None and not problems:
        problems = check_resources(spec, info, resource_limits(settings))
    if settings is not None and not problems:
        problems = _storage_problems(spec, info, session, team_id, settings)
    if settings is not None:
        problems += device_problems(spec, session, team_id, settings)
    errors = [
        FieldProblem(loc=".".join([prefix, *map(str, p.loc)]), msg=p.msg, type=p.type)
        for p in problems
    ]
    errors += check_source(spec.warm_start, session, team_id, prefix)  # issue 24
    planned = None
    if not errors and spec.warm_start is not None:
        known = _inputs_known(spec, session, team_id)
        spec, planned, errors = plan_warm_start(
            spec, info, session, team_id, inputs_known=known, prefix=prefix
        )
    if errors:
        detail = "; ".join(f"{e.loc}: {e.msg}" for e in errors[:5])
        raise ProblemError(422, "Invalid spec", detail, errors=errors)
    return Validated(info, spec, planned)

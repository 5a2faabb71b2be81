"""The worker's own resource check, before it allocates anything for a job.

The API refuses specs above the limits, but the limits may have been lowered
since, or the job may come from an older API: the worker estimates again
(``ml.resources``) with its own settings and raises ``ResourcesExceeded``,
which ends the job ``failed`` / ``resources_exceeded`` with a message naming
the field -- the job is never left to the out-of-memory killer.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from api.datasets import repository as repo
from api.datasets.codec import dataset_info
from api.settings import Settings
from ml.checks import DatasetInfo, builtin_info
from ml.resources import ResourceLimits, ResourcesExceeded, check_resources
from ml.spec import BuiltinSource, JobSpec


def _info(factory: sessionmaker[Session], spec: JobSpec, team_id: str) -> DatasetInfo | None:
    source = spec.dataset.source
    if isinstance(source, BuiltinSource):
        return builtin_info(source)
    with factory() as session:
        stored = repo.get_dataset(session, source.dataset_id, team_id)
        return None if stored is None else dataset_info(dict(stored.info))


def check_job_resources(
    factory: sessionmaker[Session], spec: JobSpec, team_id: str, settings: Settings
) -> None:
    """Raises ResourcesExceeded when the job is above the worker's limits."""
    info = _info(factory, spec, team_id)
    if info is None:
        return  # a deleted dataset: loading it reports that
    limits = ResourceLimits(settings.max_parameters, settings.max_job_memory_bytes)
    problems = check_resources(spec, info, limits)
    if problems:
        where = "; ".join(f"{'.'.join(map(str, p.loc))}: {p.msg}" for p in problems)
        raise ResourcesExceeded(f"the job exceeds this worker's limits: {where}")

"""A spec the engine cannot build ends ``failed``/``invalid_spec`` with the library's words.

Issue 28, finding 1: SGD with ``nesterov`` and no momentum validated, then the
worker failed with "Internal error" from ``torch.optim.SGD``. Now validation
refuses it, and any other exception while *building* from a validated spec is
a spec problem: never retried, never "Internal error".
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from api.db.session import session_factory
from api.ledger.models import Job
from api.settings import Settings
from ml import trainer
from ml.spec import JobSpec
from tests.worker.helpers import insert_job
from worker.runner import run_job

IRIS = {
    "dataset": {"source": {"kind": "builtin", "name": "iris"}},
    "model": {"kind": "mlp", "hidden_units": [8]},
    "epochs": 1,
}


def _job(settings: Settings, spec: dict[str, object]) -> str:
    with session_factory(settings.resolved_database_url)() as s:
        job_id = insert_job(s, spec)
        s.commit()
    return job_id


def _load(settings: Settings, job_id: str) -> Job:
    with session_factory(settings.resolved_database_url)() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def test_a_library_that_refuses_the_built_spec_fails_the_job_invalid_spec(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What torch.optim.SGD said to the audit's spec (nesterov, momentum 0), now that
    # validation refuses that spec: any refusal while building is the spec's problem.
    def refused(spec: JobSpec, model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.0, nesterov=True)

    monkeypatch.setattr(trainer, "build_optimizer", refused)
    job_id = _job(settings, IRIS)
    run_job(job_id, settings)
    job = _load(settings, job_id)
    assert (job.status, job.status_reason, job.attempt) == ("failed", "invalid_spec", 1)
    assert job.error is not None
    assert "Internal error" not in job.error
    assert "Nesterov momentum requires a momentum" in job.error  # the library's message
    assert "optimizer" in job.error  # which part could not be built


def test_a_stored_spec_that_no_longer_validates_fails_invalid_spec(settings: Settings) -> None:
    job_id = _job(settings, IRIS)
    with session_factory(settings.resolved_database_url)() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.spec = {**job.spec, "optimizer": {"kind": "sgd", "nesterov": True, "momentum": 0.0}}
        s.commit()
    run_job(job_id, settings)
    job = _load(settings, job_id)
    assert (job.status, job.status_reason, job.attempt) == ("failed", "invalid_spec", 1)
    assert job.error and "nesterov" in job.error and "optimizer" in job.error

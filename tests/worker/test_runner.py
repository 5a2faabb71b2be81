"""The worker's job lifecycle in-process on SQLite: claim, train, finish, fencing."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from api.db.session import session_factory
from api.ledger import metrics as metrics_repo
from api.ledger import repository as repo
from api.ledger.models import Job, MetricPoint
from api.settings import Settings
from ml.data import LoadedDataset, load_dataset
from ml.spec import JobSpec
from tests.worker.helpers import insert_job
from worker import runner
from worker.runner import run_job


def make_job(settings: Settings, spec: dict[str, object]) -> str:
    with session_factory(settings.resolved_database_url)() as s:
        job_id = insert_job(s, spec)
        s.commit()
        return job_id


def load(settings: Settings, job_id: str) -> tuple[Job, list[MetricPoint]]:
    with session_factory(settings.resolved_database_url)() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job, metrics_repo.read_metrics(s, job_id, None, None)


IRIS = {
    "dataset": {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 16},
    "model": {"kind": "mlp", "hidden_units": [16]},
    "epochs": 3,
    "seed": 1,
}


# Far longer than any test waits: it must be stopped (cancel, runtime limit).
LONG = {
    "dataset": {
        "source": {
            "kind": "builtin",
            "name": "synthetic",
            "synthetic": {"n_samples": 4096, "n_features": 32},
        },
        "batch_size": 8,
    },
    "epochs": 500,
}


def test_a_job_runs_to_success_with_per_epoch_metrics(settings: Settings) -> None:
    job_id = make_job(settings, IRIS)
    run_job(job_id, settings)
    job, points = load(settings, job_id)
    assert (job.status, job.status_reason, job.attempt) == ("succeeded", "completed", 1)
    assert job.progress_epoch == 3 or job.progress_step > 0
    by_name: dict[str, list[MetricPoint]] = {}
    for p in points:
        by_name.setdefault(p.name, []).append(p)
    for name in (
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "epoch_seconds",
        "samples_per_second",
    ):
        assert [p.epoch for p in by_name[name]] == [0, 1, 2], name
    steps = [p.step for p in by_name["val_accuracy"]]
    assert steps == sorted(steps) and steps[0] > 0  # global optimizer steps
    assert job.finished_at is not None and job.started_at is not None


def test_duplicate_delivery_runs_the_job_once(settings: Settings) -> None:
    job_id = make_job(settings, IRIS)
    run_job(job_id, settings)
    run_job(job_id, settings)  # the same message delivered again
    job, _ = load(settings, job_id)
    assert job.attempt == 1 and job.status == "succeeded"
    with session_factory(settings.resolved_database_url)() as s:
        assert [t.to_status for t in repo.transitions(s, job_id)] == [
            "queued",
            "running",
            "succeeded",
        ]


def test_a_stale_attempt_cannot_write(settings: Settings) -> None:
    job_id = make_job(settings, IRIS)
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        assert repo.claim_job(s, job_id, 30) == 1
        s.commit()
    with factory() as s:
        with pytest.raises(repo.StaleAttempt):
            metrics_repo.write_metrics(s, job_id, 2, [metrics_repo.Point("loss", 1, 0, 1.0)])
        with pytest.raises(repo.StaleAttempt):
            repo.finish_job(s, job_id, 2, status="succeeded", reason="completed")
        metrics_repo.write_metrics(s, job_id, 1, [metrics_repo.Point("loss", 1, 0, 1.0)])
        metrics_repo.write_metrics(
            s, job_id, 1, [metrics_repo.Point("loss", 1, 0, 0.5)]
        )  # upsert, no dup
        s.commit()
    _, points = load(settings, job_id)
    assert [(p.name, p.step, p.value) for p in points] == [("loss", 1, 0.5)]


def test_cancel_stops_a_running_job_within_seconds(settings: Settings) -> None:
    job_id = make_job(settings, LONG)
    worker = threading.Thread(target=run_job, args=(job_id, settings))
    worker.start()
    factory = session_factory(settings.resolved_database_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job, _ = load(settings, job_id)
        if job.status == "running" and job.progress_step > 0:
            break
        time.sleep(0.1)
    with factory() as s:
        job = s.get(Job, job_id)
        assert job is not None
        repo.request_cancel(s, job)
        s.commit()
    asked = time.monotonic()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert time.monotonic() - asked < 5
    job, _ = load(settings, job_id)
    assert (job.status, job.status_reason) == ("canceled", "canceled_by_user")


def test_a_failure_is_recorded_with_a_message(settings: Settings) -> None:
    job_id = make_job(settings, {**IRIS, "resources": {"device": "cuda"}})
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run_job(job_id, settings)
    job, _ = load(settings, job_id)
    assert (job.status, job.status_reason) == ("failed", "error")
    assert job.error and "cuda" in job.error.lower()


def test_max_runtime_ends_the_job_failed_with_its_reason(settings: Settings) -> None:
    job_id = make_job(settings, {**LONG, "limits": {"max_runtime_seconds": 1}})
    started = time.monotonic()
    run_job(job_id, settings)
    assert time.monotonic() - started < 30
    job, _ = load(settings, job_id)
    assert (job.status, job.status_reason) == ("failed", "max_runtime_exceeded")
    assert job.error and "max_runtime_seconds" in job.error


def test_a_non_finite_loss_fails_the_job_naming_the_step(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {
        **IRIS,
        "dataset": {**IRIS["dataset"], "shuffle": False, "validation_split": 0,
                    "preprocessing": {"normalization": "none"}},
    }  # type: ignore[dict-item]  # fmt: skip
    iris = load_dataset(JobSpec.model_validate(spec))
    x = iris.x.copy()
    x[40, 0] = np.inf  # row 40 is in the third batch of 16: the loss is infinite at step 3
    monkeypatch.setattr(runner, "load_for_job", lambda *_: LoadedDataset(x, iris.y, iris.info))
    job_id = make_job(settings, spec)
    run_job(job_id, settings)
    job, _ = load(settings, job_id)
    assert (job.status, job.status_reason) == ("failed", "non_finite_loss")
    assert job.error and "step" in job.error
    # progress says where it stopped: the step (and epoch) the error names, not (0, 0)
    assert (job.progress_epoch, job.progress_step) == (0, 3)
    assert "at step 3 (epoch 0," in job.error

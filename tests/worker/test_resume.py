"""Resume == uninterrupted: a deterministic CPU job stopped mid-run (canceled, or crashed
between checkpoints) and retried ends with the same weights, bit for bit, as the same
spec run straight through, and its metrics are one continuous series."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from safetensors.torch import load as st_load

from api.checkpoints import repository as ckrepo
from api.db.session import session_factory
from api.ledger import metrics as metrics_repo
from api.ledger import repository as repo
from api.ledger.models import Job, MetricPoint
from api.settings import Settings
from tests.worker.test_runner import make_job
from worker import runner
from worker.runner import run_job

SPEC = {
    "dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 16},
    "model": {"kind": "mlp", "hidden_units": [32]},
    "regularization": {"dropout": 0.2},  # draws from the RNG every step: resume restores it
    "optimizer": {"kind": "adam", "lr": 0.003},
    "schedule": {"kind": "cosine"},
    "epochs": 5,
    "seed": 7,
    "deterministic": True,
    "resources": {"device": "cpu"},
    "checkpointing": {"every_n_epochs": 2, "keep_last": 2, "keep_best": 1},
}
STEPS_PER_EPOCH = 90  # digits: 1437 training samples in batches of 16


def final_weights(settings: Settings, job_id: str) -> dict[str, torch.Tensor]:
    with session_factory(settings.resolved_database_url)() as s:
        latest = ckrepo.latest_checkpoint(s, job_id)
        assert latest is not None
        return st_load(ckrepo.read_file(s, latest.id, "weights"))


def metric_steps(settings: Settings, job_id: str) -> dict[str, list[tuple[int, int]]]:
    with session_factory(settings.resolved_database_url)() as s:
        out: dict[str, list[tuple[int, int]]] = {}
        for p in metrics_repo.read_metrics(s, job_id, None, None):
            out.setdefault(p.name, []).append((p.epoch, p.step))
        return out


def metric_values(settings: Settings, job_id: str, name: str) -> list[float | None]:
    with session_factory(settings.resolved_database_url)() as s:
        return [p.value for p in metrics_repo.read_metrics(s, job_id, [name], None)]


def job(settings: Settings, job_id: str) -> Job:
    with session_factory(settings.resolved_database_url)() as s:
        found = s.get(Job, job_id)
        assert found is not None
        return found


def interrupt_at(
    monkeypatch: pytest.MonkeyPatch, call: int, how: str
) -> Callable[[Settings, str], None]:
    """Run the job and stop it before its ``call``-th optimizer step.

    ``cancel``: the heartbeat has just read the cancel flag (the engine saves a
    checkpoint mid-epoch). ``crash``: the worker dies there, with no checkpoint
    since the last periodic one. Counting steps makes the point exact.
    """

    def run(settings: Settings, job_id: str) -> None:
        calls = {"n": 0}
        original = runner.LeaseKeeper.should_stop

        def stopping(self: runner.LeaseKeeper) -> bool:
            calls["n"] += 1
            if calls["n"] == call:
                if how == "crash":
                    raise RuntimeError("the worker died")
                self.cancel_requested = True
            return original(self)

        with monkeypatch.context() as m:
            m.setattr(runner.LeaseKeeper, "should_stop", stopping)
            run_job(job_id, settings)

    return run


@pytest.mark.parametrize(
    "interruption",
    ["cancel", pytest.param("crash", marks=pytest.mark.slow)],  # crash: > 1 s
)
def test_resume_equals_an_uninterrupted_run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, interruption: str
) -> None:
    straight = make_job(settings, SPEC)
    run_job(straight, settings)
    assert job(settings, straight).status == "succeeded"

    interrupted = make_job(settings, SPEC)
    # In epoch 3 (from 0): after epoch 2's metrics, and after the last periodic
    # checkpoint (every 2 epochs: at the end of epoch 1).
    interrupt_at(monkeypatch, 3 * STEPS_PER_EPOCH + 21, interruption)(settings, interrupted)
    first = job(settings, interrupted)
    if interruption == "cancel":
        assert (first.status, first.status_reason) == ("canceled", "canceled_by_user")
    else:
        assert (first.status, first.status_reason) == ("failed", "error")
    assert [e for e, _ in metric_steps(settings, interrupted)["loss"]] == [0, 1, 2]
    with session_factory(settings.resolved_database_url)() as s:
        resume_from = ckrepo.latest_checkpoint(s, interrupted)
        assert resume_from is not None
    # cancel: a checkpoint right where it stopped; crash: the one of epoch 1's end.
    stopped = 3 * STEPS_PER_EPOCH + 20 if interruption == "cancel" else 2 * STEPS_PER_EPOCH
    assert resume_from.step == stopped
    with session_factory(settings.resolved_database_url)() as s:
        found = s.get(Job, interrupted)
        assert found is not None and repo.retry_job(s, found)
        s.commit()
    run_job(interrupted, settings)
    done = job(settings, interrupted)
    assert (done.status, done.attempt) == ("succeeded", 2)

    a, b = final_weights(settings, straight), final_weights(settings, interrupted)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name

    # One continuous series: the same (epoch, step) points as the straight run, each once.
    steps_a, steps_b = metric_steps(settings, straight), metric_steps(settings, interrupted)
    assert steps_a == steps_b
    assert [e for e, _ in steps_b["val_loss"]] == list(range(SPEC["epochs"]))  # type: ignore[arg-type]
    with session_factory(settings.resolved_database_url)() as s:
        attempts = {
            p.step: p.attempt
            for p in s.query(MetricPoint).filter_by(job_id=interrupted, name="val_loss")
        }
    assert set(attempts.values()) == {1, 2}  # history from both attempts, joined
    # The model-derived metrics match exactly too.
    assert metric_values(settings, straight, "val_loss") == metric_values(
        settings, interrupted, "val_loss"
    )

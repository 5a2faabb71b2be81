"""CPU threads per job (worker/torch_threads.py): the choice, and the job log that states it."""

from __future__ import annotations

import pytest
import torch

from api.db.session import session_factory
from api.joblogs.repository import lines_after
from api.settings import Settings
from ml.architecture import multiply_adds_per_sample
from ml.checks import builtin_info
from ml.spec import BuiltinSource, JobSpec
from tests.worker.helpers import insert_job
from worker import torch_threads as threads
from worker.runner import run_job

DIGITS = {"source": {"kind": "builtin", "name": "digits"}}
IRIS = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 1, "seed": 0}


@pytest.mark.parametrize(
    ("cores", "others_busy", "expected"),
    [(2, 0.0, 2), (2, 0.4, 2), (2, 1.0, 1), (2, 12.0, 1), (8, 2.3, 6), (1, 0.0, 1)],
)
def test_automatic_threads_are_the_cores_other_work_leaves_free(
    monkeypatch: pytest.MonkeyPatch, cores: int, others_busy: float, expected: int
) -> None:
    monkeypatch.setattr(threads, "cores", lambda: cores)
    choice = threads.choose(None, others_busy)
    assert choice.threads == expected
    assert f"{cores} core(s), {others_busy:.1f} busy" in choice.why


@pytest.mark.parametrize(
    ("model", "batch", "expected"),
    [
        ({"kind": "mlp", "hidden_units": [128]}, 32, 1),  # the README's digits MLP
        ({"kind": "cnn", "channels": [32, 64]}, 128, 2),
        ({"kind": "mlp", "hidden_units": [512, 512]}, 128, 2),
    ],
)
def test_a_small_step_gets_one_thread_even_on_an_idle_host(
    monkeypatch: pytest.MonkeyPatch, model: dict[str, object], batch: int, expected: int
) -> None:
    monkeypatch.setattr(threads, "cores", lambda: 2)
    spec = JobSpec.model_validate(
        {"dataset": {**DIGITS, "batch_size": batch}, "model": model, "epochs": 1}
    )
    assert isinstance(spec.dataset.source, BuiltinSource)
    work = multiply_adds_per_sample(spec, builtin_info(spec.dataset.source)) * batch
    choice = threads.choose(None, others_busy=0.0, step_work=work)
    assert choice.threads == expected, choice
    assert ("small step" in choice.why) == (expected == 1)


def test_a_configured_count_wins_over_the_load() -> None:
    assert threads.choose(3, others_busy=100.0) == threads.ThreadChoice(
        3, "TRAINFORGE_TORCH_THREADS"
    )


def test_the_meter_reports_other_processes_busy_cores_within_the_hosts_cores() -> None:
    meter = threads.BusyMeter()
    assert meter.others_busy is None  # nothing measured yet
    sum(i * i for i in range(300_000))  # this process's own work is not "others"
    meter.update()
    busy = meter.others_busy
    assert busy is not None and 0.0 <= busy <= threads.cores()


def test_the_job_log_says_how_many_threads_ran_and_why(settings: Settings) -> None:
    before = torch.get_num_threads()
    factory = session_factory(settings.resolved_database_url)
    with factory() as s:
        job_id = insert_job(s, IRIS)
        s.commit()
    try:
        run_job(job_id, settings.model_copy(update={"torch_threads": 1}))
    finally:
        torch.set_num_threads(before)
    with factory() as s:
        messages = [line.message for line in lines_after(s, job_id, 0, 100)]
    assert "1 CPU thread(s): TRAINFORGE_TORCH_THREADS" in messages
    assert any("with 1 CPU thread(s)" in m for m in messages), messages

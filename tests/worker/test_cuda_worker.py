"""The worker's side of the CUDA path (issue 30), on this CPU machine: the process-wide
cuBLAS setting, several GPUs without CUDA_VISIBLE_DEVICES, out-of-memory as a typed
failure, GPU gauges by UUID (torch.cuda stood in for where a GPU would be needed)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch

from api.db.session import session_factory
from api.ledger.models import Job
from api.settings import Settings
from ml.trainer import Trainer
from tests.conftest import REPO
from tests.worker.helpers import insert_job
from worker import queues
from worker.metrics_server import _cuda
from worker.queues import gpu_sharing_warning, worker_queues
from worker.runner import run_job

IRIS = {
    "dataset": {"source": {"kind": "builtin", "name": "iris"}, "batch_size": 16},
    "model": {"kind": "mlp", "hidden_units": [16]},
    "epochs": 2,
}


@pytest.mark.e2e
def test_a_worker_process_has_the_cublas_setting_before_torch_touches_cuda() -> None:
    """What `trainforge worker` and `celery -A worker.celery_app` import first: the setting
    is in the environment before any job (and so before cuBLAS's first call)."""
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    env["PYTHONPATH"] = str(REPO)
    probe = (
        "import os, torch, worker.celery_app, worker.runner\n"
        "print(os.environ.get('CUBLAS_WORKSPACE_CONFIG'), torch.cuda.is_initialized())\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True)  # fmt: skip
    assert out.stdout.split() == [":4096:8", "False"]
    env["CUBLAS_WORKSPACE_CONFIG"] = ":16:8"  # an operator's own deterministic value stays
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True)  # fmt: skip
    assert out.stdout.split()[0] == ":16:8"


def test_several_gpus_without_cuda_visible_devices_are_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert gpu_sharing_warning(1, None) is None
    assert gpu_sharing_warning(4, "2") is None
    message = gpu_sharing_warning(4, None)
    assert message and "CUDA_VISIBLE_DEVICES" in message and "GPU 0" in message
    monkeypatch.setattr(queues, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    settings = Settings()
    with caplog.at_level(logging.WARNING, logger="worker.queues"):
        assert worker_queues(settings, None) == f"{settings.queue},{settings.gpu_queue}"
    assert any("sees 4 GPUs" in r.getMessage() for r in caplog.records)
    caplog.clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with caplog.at_level(logging.WARNING, logger="worker.queues"):
        worker_queues(settings, None)
    assert not caplog.records


def test_out_of_memory_fails_the_job_resources_exceeded_with_a_hint(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def oom(self: Trainer, *args: object, **kwargs: object) -> object:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 512.00 MiB. GPU 0")

    monkeypatch.setattr(Trainer, "step", oom)
    with session_factory(settings.resolved_database_url)() as s:
        job_id = insert_job(s, IRIS)
        s.commit()
    run_job(job_id, settings)
    with session_factory(settings.resolved_database_url)() as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert (job.status, job.status_reason) == ("failed", "resources_exceeded")
        assert job.error and "out of memory" in job.error and "dataset.batch_size" in job.error
        assert "Internal error" not in job.error


def test_cuda_gauges_are_labelled_by_the_gpus_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a container each worker's only GPU is index 0: the UUID tells the cards apart."""

    class Props:
        total_memory = 80 * 2**30

        def __init__(self, index: int) -> None:
            self.uuid = f"6f1c2b3a-0000-0000-0000-00000000000{index}"

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda i: 1000)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: 2000)
    monkeypatch.setattr(torch.cuda, "get_device_properties", Props)
    monkeypatch.setattr(torch.cuda, "utilization", lambda i: 50)
    for family in _cuda():
        uuids = [s.labels["uuid"] for s in family.samples]
        assert uuids == [f"GPU-6f1c2b3a-0000-0000-0000-00000000000{i}" for i in range(2)]

"""A job's status and the reasons for it: domain values, no pydantic and no FastAPI.

The worker and the store use them; api/jobs/schemas.py re-exports them for the HTTP bodies.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"


class StatusReason(StrEnum):
    completed = "completed"
    early_stopped = "early_stopped"
    pruned = "pruned"  # a sweep's early termination (ASHA, median) stopped this trial
    canceled_by_user = "canceled_by_user"
    non_finite_loss = "non_finite_loss"
    max_runtime_exceeded = "max_runtime_exceeded"
    worker_lost = "worker_lost"
    worker_shutdown = "worker_shutdown"  # queued again: its worker stopped (not a restart)
    storage_quota_exceeded = "storage_quota_exceeded"  # a checkpoint over the team quota
    resources_exceeded = "resources_exceeded"
    invalid_spec = "invalid_spec"  # the engine could not build a validated spec (never retried)
    error = "error"


class QueueReason(StrEnum):
    quota = "quota"
    waiting_for_worker = "waiting_for_worker"
    waiting_for_gpu = "waiting_for_gpu"  # resources.device cuda and no GPU worker is alive
    waiting_for_devices = "waiting_for_devices"  # no alive worker offers resources.devices

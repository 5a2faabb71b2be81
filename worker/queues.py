"""Which queues a worker consumes: the GPU queue only where there is a GPU.

A job with ``resources.device: cuda`` is published to ``TRAINFORGE_GPU_QUEUE``
(``trainforge.cuda``); every other job to ``TRAINFORGE_QUEUE`` (``trainforge``).
A worker without ``--queues`` consumes the CPU queue, plus the GPU queue when
this process sees a CUDA device (``CUDA_VISIBLE_DEVICES`` decides which). A GPU
queue asked for on a machine without one is dropped with a warning: its jobs
wait (``queue_reason: waiting_for_gpu`` while no GPU worker is alive) instead of
failing on the first worker that happens to receive them.
"""

from __future__ import annotations

import logging

from api.settings import Settings

log = logging.getLogger(__name__)


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def worker_queues(settings: Settings, requested: str | None, has_gpu: bool | None = None) -> str:
    """The comma-separated queue list for ``celery worker --queues``."""
    gpu = cuda_available() if has_gpu is None else has_gpu
    if requested is None:
        return f"{settings.queue},{settings.gpu_queue}" if gpu else settings.queue
    names = [q.strip() for q in requested.split(",") if q.strip()]
    if settings.gpu_queue in names and not gpu:
        log.warning(
            "this worker sees no CUDA device: not consuming %s (its jobs wait for a GPU worker)",
            settings.gpu_queue,
        )
        names = [q for q in names if q != settings.gpu_queue]
    if not names:
        raise SystemExit(
            f"trainforge worker: no queue left to consume ({requested!r} without a GPU); "
            f"use --queues {settings.queue} or run it where CUDA_VISIBLE_DEVICES shows a GPU"
        )
    return ",".join(names)

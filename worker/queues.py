"""Which queues a worker consumes: the GPU queue only where there is a GPU.

A job with ``resources.device: cuda`` is published to ``TRAINFORGE_GPU_QUEUE``
(``trainforge.cuda``); every other job to ``TRAINFORGE_QUEUE`` (``trainforge``).
A worker without ``--queues`` consumes the CPU queue, plus the GPU queue when
this process sees a CUDA device (``CUDA_VISIBLE_DEVICES`` decides which). A GPU
queue asked for on a machine without one is dropped with a warning: its jobs
wait (``queue_reason: waiting_for_gpu`` while no GPU worker is alive) instead of
failing on the first worker that happens to receive them.

A worker on a host with several GPUs and no ``CUDA_VISIBLE_DEVICES`` would train
on GPU 0 like every other such worker: it logs a warning at start (set the
variable to one GPU per worker).
"""

from __future__ import annotations

import logging
import os

from api.settings import Settings

log = logging.getLogger(__name__)


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def gpu_sharing_warning(device_count: int, visible: str | None) -> str | None:
    """What a worker that sees several GPUs without CUDA_VISIBLE_DEVICES is told."""
    if device_count <= 1 or visible is not None:
        return None
    return (
        f"this worker sees {device_count} GPUs and CUDA_VISIBLE_DEVICES is not set: it trains "
        "on GPU 0, as does every other worker started like it on this host. Start one worker "
        "per GPU with CUDA_VISIBLE_DEVICES=<index> (docker-compose.gpu.yml does)."
    )


def worker_queues(settings: Settings, requested: str | None, has_gpu: bool | None = None) -> str:
    """The comma-separated queue list for ``celery worker --queues``."""
    gpu = cuda_available() if has_gpu is None else has_gpu
    if gpu and has_gpu is None:
        import torch

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        warning = gpu_sharing_warning(torch.cuda.device_count(), visible)
        if warning:
            log.warning("%s", warning)
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

"""The devices this worker offers to data-parallel jobs, and the pool they come from.

``TRAINFORGE_WORKER_DEVICES`` when set; else the CUDA devices this process sees
(``CUDA_VISIBLE_DEVICES`` decides which); else, on a host without a GPU, one CPU
"device" (a training process) per core. The pool is ``TRAINFORGE_DEVICE_POOL``, or
this worker's own name: worker processes that name one pool share its devices, and a
claim reserves a job's devices from it atomically (api.ledger.devices).
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache

from api.ledger.devices import Pool
from api.settings import Settings
from worker.log_sink import WORKER_NAME

log = logging.getLogger(__name__)


def device_count(settings: Settings, cuda_devices: int | None = None) -> int:
    """How many devices this worker offers (``cuda_devices``: what torch sees, for tests)."""
    if settings.worker_devices is not None:
        return settings.worker_devices
    if cuda_devices is None:
        cuda_devices = _cuda_device_count()
    if cuda_devices > 0:
        return cuda_devices
    return max(1, os.cpu_count() or 1)


def _cuda_device_count() -> int:
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def pool_for(settings: Settings, cuda_devices: int | None = None) -> Pool:
    return Pool(settings.device_pool or WORKER_NAME, device_count(settings, cuda_devices))


@lru_cache(maxsize=8)
def _cached(worker_devices: int | None, device_pool: str | None) -> Pool:
    settings = Settings(worker_devices=worker_devices, device_pool=device_pool)
    pool = pool_for(settings)
    log.info("this worker offers %d device(s) from pool %s", pool.devices, pool.name)
    return pool


def this_worker_pool(settings: Settings) -> Pool:
    """This process's pool (the CUDA count is read once per process)."""
    return _cached(settings.worker_devices, settings.device_pool)

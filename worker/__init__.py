"""The Celery worker process (``trainforge worker``, or ``celery -A worker.celery_app``).

Importing this package fixes the process-wide CUDA settings that must be in place
before torch first touches the GPU: cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` once,
at the process's first cuBLAS call, so a per-job setting comes too late for every
``deterministic: true`` job after the first CUDA job of a long-lived worker.
"""

import os

# ":4096:8" is what torch.use_deterministic_algorithms asks for (8 MiB of cuBLAS
# workspace); an operator's own value (e.g. ":16:8") is kept.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

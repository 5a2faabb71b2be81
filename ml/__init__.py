"""The PyTorch training engine.

``import ml`` and ``import ml.spec`` stay torch-free (the API imports the
spec); the engine itself is imported on first use of ``ml.train``.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("train", "TrainResult"):  # ml.engine holds the loop
        from ml import engine as _engine

        return getattr(_engine, name)
    raise AttributeError(name)

"""The engine's seam for a sweep's early termination (ASHA, median).

At each epoch end (its metrics logged and flushed) the engine asks an
``EpochPruner`` whether the run should stop now. A pruned run ends like an
early-stopped one: a final checkpoint, its metrics kept, ``status_reason``
``pruned``. ``ml`` defines the protocol; ``worker`` implements it against the
sweep's state in SQL, and a benchmark can implement it in memory.
Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class EpochPruner(Protocol):
    def should_prune(self, epoch: int, values: Mapping[str, float]) -> bool:
        """After epoch ``epoch`` (0-based) ended with ``values``: stop this run now?"""
        ...

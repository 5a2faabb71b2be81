"""Which trials can train as one pack (torch-free).

SEQUENTIAL STAND-IN (pack-service branch): the engine branch owns this file and its
real version replaces this one at merge. The interface is the contract:
``pack_key(spec)`` -- equal keys can train as one pack; ``pack_blocker(spec)`` -- why a
spec cannot pack at all, or None.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ml.spec import JobSpec

# Sections whose numbers leave every shape alone (their ``kind`` strings stay in the key).
_NUMERIC_SECTIONS = ("optimizer", "regularization", "schedule", "clipping", "init")
_DROPPED = ("seed", "early_stopping", "limits", "retry")


def _strip_numbers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_numbers(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    return "#"  # an int or float: any value packs


def pack_key(spec: JobSpec) -> str:
    """Equal keys: the specs differ only in numbers that leave shapes alone."""
    dumped = spec.model_dump(mode="json")
    for name in _DROPPED:
        dumped.pop(name, None)
    for name in _NUMERIC_SECTIONS:
        dumped[name] = _strip_numbers(dumped.get(name))
    text = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def pack_blocker(spec: JobSpec) -> str | None:
    """Why ``spec`` cannot train in a pack, or None."""
    if spec.warm_start is not None:
        return "warm_start: a warm-started trial trains alone"
    if spec.resources.devices > 1:
        return "resources.devices > 1: a data-parallel trial trains alone"
    return None

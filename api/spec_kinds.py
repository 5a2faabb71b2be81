"""Every ``kind`` tag of the job spec's discriminated unions (for error locations)."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel

from ml import spec as spec_module


def _collect() -> frozenset[str]:
    tags: set[str] = set()
    for obj in vars(spec_module).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel) and "kind" in obj.model_fields:
            annotation: Any = obj.model_fields["kind"].annotation
            tags.update(str(a) for a in typing.get_args(annotation))
    return frozenset(tags)


KIND_TAGS = _collect()

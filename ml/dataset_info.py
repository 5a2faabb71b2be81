"""What validation knows of a dataset, and what it reports of a spec: torch-free values.

Their own module (``ml.checks`` re-exports both) so that the shape inference
(``ml.shapes``) and the shorthands can use them without importing the checks that
call them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class DatasetInfo:
    task: Literal["classification", "regression"]
    modality: Literal["tabular", "image", "text"]
    n_samples: int
    n_features: int  # flattened feature count (0 for text)
    image_shape: tuple[int, int, int] | None  # (C, H, W) for images
    n_classes: int  # 0 for regression


@dataclass(frozen=True)
class SpecProblem:
    loc: tuple[str | int, ...]  # location inside the spec, e.g. ("schedule", "patience")
    msg: str  # what is wrong and what to do about it
    type: str  # short machine code, e.g. "augmentation_not_image"
